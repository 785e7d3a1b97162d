"""The local audio and moderation models, raw, in-process: no server, no queue.

Prints one JSON line per measurement:

* speech: real-time factor (synthesis seconds / audio seconds; below 1 is
  faster than real time), wall time to the first sentence;
* transcription: real-time factor for a ~5 s clip of the voice's speech,
  and the word accuracy of that round trip;
* moderation: texts per second for 100 texts in one call.

    .venv/bin/python bench/audio_raw.py [--repeat 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from ezlink.backends.audio_codec import encode_speech
from ezlink.backends.piper_voice import PiperVoice
from ezlink.backends.profanity import ProfanityClassifier
from ezlink.backends.whisper import WhisperTranscriber

CLIP = (
    "The quick brown fox jumps over the lazy dog. "
    "A gateway serves many models behind one simple interface."
)
GREETINGS = ["Hello, how are you today?", "Thanks for the help with the report."]
INSULTS = ["You are a stupid idiot.", "What a dumb question, you moron."]


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def bench_speech(voice: PiperVoice, repeat: int) -> tuple[bytes, float]:
    """Synthesize CLIP `repeat` times; the wav of the last run, and its seconds."""
    voice.synthesize("Warm up.")
    rtfs, firsts = [], []
    pcm = None
    for _ in range(repeat):
        started = time.perf_counter()
        chunks = []
        for chunk in voice.stream(CLIP):
            if not chunks:
                firsts.append(time.perf_counter() - started)
            chunks.append(chunk)
        elapsed = time.perf_counter() - started
        pcm = np.concatenate(chunks)
        rtfs.append(elapsed / (pcm.size / voice.sample_rate))
    assert pcm is not None
    seconds = pcm.size / voice.sample_rate
    emit(
        bench="speech",
        audio_seconds=round(seconds, 2),
        rtf_median=round(statistics.median(rtfs), 3),
        first_sentence_s=round(statistics.median(firsts), 3),
        threads=voice.session.get_session_options().intra_op_num_threads,
    )
    return encode_speech(pcm, voice.sample_rate, "wav"), seconds


def bench_transcription(
    whisper: WhisperTranscriber, wav: bytes, seconds: float, repeat: int
) -> None:
    whisper.transcribe(wav)
    rtfs = []
    text = ""
    for _ in range(repeat):
        started = time.perf_counter()
        text = whisper.transcribe(wav).text
        rtfs.append((time.perf_counter() - started) / seconds)
    expected, heard = words(CLIP), set(words(text))
    emit(
        bench="transcription",
        audio_seconds=round(seconds, 2),
        rtf_median=round(statistics.median(rtfs), 3),
        word_accuracy=round(sum(w in heard for w in expected) / len(expected), 3),
        text=text,
    )


def bench_moderation(classifier: ProfanityClassifier, repeat: int) -> None:
    texts = [(GREETINGS + INSULTS)[i % 4] + f" ({i})" for i in range(100)]
    classifier.score(texts)
    rates = []
    for _ in range(repeat):
        started = time.perf_counter()
        classifier.score(texts)
        rates.append(len(texts) / (time.perf_counter() - started))
    emit(bench="moderation", texts=len(texts), per_second_median=round(statistics.median(rates)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="ONNX intra-op threads (voice)")
    parser.add_argument("--whisper-threads", type=int, default=2)
    args = parser.parse_args()

    started = time.perf_counter()
    voice = PiperVoice(intra_op_threads=args.threads)
    emit(bench="load", model="piper joe-medium", seconds=round(time.perf_counter() - started, 2))
    started = time.perf_counter()
    whisper = WhisperTranscriber(cpu_threads=args.whisper_threads)
    emit(bench="load", model="whisper tiny.en", seconds=round(time.perf_counter() - started, 2))
    started = time.perf_counter()
    classifier = ProfanityClassifier()
    emit(bench="load", model="alt-profanity-check", seconds=round(time.perf_counter() - started, 2))

    wav, seconds = bench_speech(voice, args.repeat)
    bench_transcription(whisper, wav, seconds, args.repeat)
    bench_moderation(classifier, args.repeat)


if __name__ == "__main__":
    main()
