"""Speech, transcription and moderations through `ezlink serve`, side by side
with the same models raw in this process, in one run; prints the ratios.

Starts `ezlink serve` with the three local models of the default config
(piper-joe, whisper-tiny-en, profanity-check: same threads), loads the same
models here, and measures in alternating pairs (raw, then served, then raw...)
so that the drift of a shared machine falls on both halves alike:

* speech: real-time factor (seconds to make the audio / seconds of audio) of
  CLIP as mp3: raw is Piper plus the mp3 encoder, served is the whole
  streamed HTTP answer read by a client;
* transcription: real-time factor of that mp3, raw `WhisperTranscriber`
  against POST /v1/audio/transcriptions (multipart upload, json answer);
* moderations: texts per second, 100 texts in one call / one request, and
  single-text requests one after another (the per-request cost).

A ratio is raw time / served time (speed served / speed raw): 1.0 means no
cost, the goal is >= 0.9.

    .venv/bin/python bench/audio_server.py [--repeat 5] [--out results.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from ezlink.backends.audio_codec import encode_speech
from ezlink.backends.piper_voice import PiperVoice
from ezlink.backends.profanity import ProfanityClassifier
from ezlink.backends.whisper import WhisperTranscriber

CLIP = (
    "The quick brown fox jumps over the lazy dog. "
    "A gateway serves many models behind one simple interface."
)
TEXTS = ["Hello, how are you today?", "You are a stupid idiot.", "Thanks for the report."]
KEY = "sk-bench-audio-0123456789"
lines: list[str] = []


def emit(**fields: object) -> None:
    line = json.dumps(fields)
    lines.append(line)
    print(line, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(port: int) -> subprocess.Popen[bytes]:
    config = {
        "server": {"master_key": KEY, "log_level": "warning"},
        "models": [
            {"kind": "piper", "id": "piper-joe", "aliases": ["tts-1"]},
            {"kind": "whisper", "id": "whisper-tiny-en", "aliases": ["whisper-1"]},
            {"kind": "moderation", "id": "profanity-check"},
        ],
    }
    directory = Path(tempfile.mkdtemp(prefix="ezlink-bench-audio-"))
    path = directory / "ezlink.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "EZLINK_DATA_DIR": str(directory)}
    command = [sys.executable, "-m", "ezlink", "serve", "--config", str(path), "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise SystemExit("ezlink serve exited early")
        time.sleep(0.3)
    process.kill()
    raise SystemExit("ezlink serve did not become ready")


def paired(
    raw: Callable[[], object], served: Callable[[], object], repeat: int
) -> tuple[float, float]:
    """Median seconds of each, measured in alternating pairs after one warm-up each."""
    raw(), served()
    raw_times, served_times = [], []
    for _ in range(repeat):
        for fn, times in ((raw, raw_times), (served, served_times)):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
    return statistics.median(raw_times), statistics.median(served_times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    port = free_port()
    server = start_server(port)
    try:
        run(f"http://127.0.0.1:{port}/v1", args.repeat)
    finally:
        server.terminate()
        server.wait(30)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run(api: str, repeat: int) -> None:
    voice = PiperVoice(intra_op_threads=1)
    whisper = WhisperTranscriber(cpu_threads=2)
    classifier = ProfanityClassifier()
    http = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {KEY}"}, timeout=120)

    def raw_speech() -> bytes:
        return encode_speech(voice.synthesize(CLIP), voice.sample_rate, "mp3")

    def served_speech() -> bytes:
        body = {"model": "tts-1", "voice": "alloy", "input": CLIP, "response_format": "mp3"}
        with http.stream("POST", "/audio/speech", json=body) as response:
            response.raise_for_status()
            return b"".join(response.iter_bytes())

    mp3 = served_speech()
    seconds = whisper.transcribe(mp3).duration
    raw_s, served_s = paired(raw_speech, served_speech, repeat)
    emit(
        bench="speech",
        audio_seconds=round(seconds, 2),
        raw_rtf=round(raw_s / seconds, 3),
        served_rtf=round(served_s / seconds, 3),
        ratio=round(raw_s / served_s, 3),
    )

    def served_transcription() -> str:
        files = {"file": ("clip.mp3", mp3, "audio/mpeg")}
        response = http.post("/audio/transcriptions", data={"model": "whisper-1"}, files=files)
        response.raise_for_status()
        return str(response.json()["text"])

    raw_s, served_s = paired(lambda: whisper.transcribe(mp3), served_transcription, repeat)
    emit(
        bench="transcription",
        audio_seconds=round(seconds, 2),
        raw_rtf=round(raw_s / seconds, 3),
        served_rtf=round(served_s / seconds, 3),
        ratio=round(raw_s / served_s, 3),
        text=served_transcription(),
    )

    def served_moderation(texts: list[str]) -> None:
        body = {"model": "profanity-check", "input": texts if len(texts) > 1 else texts[0]}
        http.post("/moderations", json=body).raise_for_status()

    for size in (100, 1000):
        batch = [TEXTS[i % len(TEXTS)] + f" ({i})" for i in range(size)]
        raw_s, served_s = paired(
            lambda batch=batch: classifier.score(batch),
            lambda batch=batch: served_moderation(batch),
            repeat * 2,
        )
        emit(
            bench="moderations",
            texts_per_request=size,
            raw_per_second=round(size / raw_s),
            served_per_second=round(size / served_s),
            ratio=round(raw_s / served_s, 3),
        )
    singles = [TEXTS[i % len(TEXTS)] + f" ({i})" for i in range(50)]
    raw_s, served_s = paired(
        lambda: [classifier.score([t]) for t in singles],
        lambda: [served_moderation([t]) for t in singles],
        repeat,
    )
    emit(
        bench="moderations",
        texts_per_request=1,
        raw_per_second=round(len(singles) / raw_s),
        served_per_second=round(len(singles) / served_s),
        ratio=round(raw_s / served_s, 3),
    )


if __name__ == "__main__":
    main()
