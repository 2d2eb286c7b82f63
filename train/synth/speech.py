"""Speech via the espeak-ng formant synthesiser (run as a subprocess), with varied voices.

Utterances are drawn from a deterministic pool: utterance ``i`` of pool ``pool_seed`` always has
the same text, voice, variant, pitch, rate and word gap, so a seed reproduces a scene exactly while
repeated utterances are served from an in-process cache (and optionally a disk cache). If
espeak-ng is not installed, :func:`generate` raises :class:`SpeechUnavailableError`; use
:func:`available` to check first (the scene synthesiser then warns and skips procedural speech).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soxr

from .core import DEFAULT_SAMPLE_RATE, Range, Sound, active_segments, choose, normalize, randint, uniform

LANGUAGES = (
    "en-us",
    "en-us",
    "en-gb",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-029",
    "en-gb-x-gbcwmd",
    "de",
    "fr",
    "es",
    "it",
)
VARIANTS = (
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "klatt",
    "klatt2",
    "klatt3",
    "croak",
    "robert",
    "steph",
    "paul",
    "linda",
    "max",
    "john",
    "edward",
    "belinda",
)
WORDS = [
    "the",
    "a",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "hello",
    "hi",
    "yes",
    "no",
    "okay",
    "please",
    "thank",
    "you",
    "what",
    "where",
    "when",
    "why",
    "how",
    "who",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "have",
    "has",
    "had",
    "do",
    "does",
    "did",
    "will",
    "would",
    "can",
    "could",
    "should",
    "may",
    "might",
    "time",
    "day",
    "night",
    "morning",
    "evening",
    "today",
    "tomorrow",
    "yesterday",
    "week",
    "year",
    "people",
    "man",
    "woman",
    "child",
    "friend",
    "family",
    "house",
    "home",
    "door",
    "room",
    "kitchen",
    "table",
    "chair",
    "window",
    "car",
    "street",
    "city",
    "road",
    "shop",
    "market",
    "work",
    "school",
    "office",
    "water",
    "coffee",
    "tea",
    "food",
    "dinner",
    "lunch",
    "breakfast",
    "bread",
    "apple",
    "money",
    "phone",
    "computer",
    "book",
    "paper",
    "music",
    "game",
    "good",
    "bad",
    "big",
    "small",
    "new",
    "old",
    "long",
    "short",
    "high",
    "low",
    "right",
    "left",
    "first",
    "last",
    "next",
    "little",
    "great",
    "nice",
    "fine",
    "go",
    "come",
    "see",
    "look",
    "take",
    "make",
    "know",
    "think",
    "say",
    "tell",
    "ask",
    "give",
    "find",
    "want",
    "need",
    "like",
    "love",
    "call",
    "try",
    "leave",
    "put",
    "I",
    "you",
    "he",
    "she",
    "we",
    "they",
    "it",
    "this",
    "that",
    "these",
    "those",
    "my",
    "your",
    "his",
    "her",
    "our",
    "their",
    "here",
    "there",
    "now",
    "then",
    "very",
    "really",
    "just",
    "also",
    "only",
    "still",
    "again",
    "always",
    "never",
    "maybe",
    "sure",
    "well",
    "so",
    "because",
    "but",
    "and",
    "or",
    "if",
    "about",
    "with",
]

_cache: dict[tuple, np.ndarray] = {}


class SpeechUnavailableError(RuntimeError):
    """espeak-ng (or espeak) is not installed."""


def _binary() -> str | None:
    return shutil.which("espeak-ng") or shutil.which("espeak")


def available() -> bool:
    """True when an espeak-ng (or espeak) executable is on PATH."""
    return _binary() is not None


def _synthesise(text: str, voice: str, pitch: int, rate: int, gap: int) -> tuple[np.ndarray, int]:
    exe = _binary()
    if exe is None:
        raise SpeechUnavailableError(
            "speech synthesis needs espeak-ng: install it (e.g. `apt-get install espeak-ng`) or provide "
            "recorded speech as a labelled-clip folder (ROOT/speech/*.wav)"
        )
    cmd = [exe, "-v", voice, "-p", str(pitch), "-s", str(rate), "-g", str(gap), "--stdout", text]
    proc = subprocess.run(cmd, capture_output=True, check=True, timeout=60)
    data = proc.stdout
    if len(data) < 44 or data[:4] != b"RIFF":
        raise RuntimeError(f"espeak-ng produced no WAV output for voice {voice!r}: {proc.stderr[:200]!r}")
    sr = int.from_bytes(data[24:28], "little")
    audio = np.frombuffer(data[44 : 44 + (len(data) - 44) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
    return audio, sr


def utterance_params(index: int, pool_seed: int, pitch_range: Range, rate_range: Range, words: tuple[int, int]) -> dict:
    """The (deterministic) text and voice parameters of utterance ``index`` of a pool."""
    r = np.random.default_rng([pool_seed, index, 0x5EEC])
    text = " ".join(choose(r, WORDS) for _ in range(randint(r, words)))
    return {
        "text": text,
        "voice": f"{choose(r, LANGUAGES)}+{choose(r, VARIANTS)}",
        "pitch": int(uniform(r, pitch_range)),
        "rate": int(uniform(r, rate_range)),
        "gap": int(r.integers(0, 4)),
    }


def utterance(
    index: int,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    *,
    pool_seed: int = 0,
    pitch_range: Range = (15.0, 85.0),
    rate_range: Range = (120.0, 220.0),
    words: tuple[int, int] = (3, 12),
    cache_dir: str | Path | None = None,
) -> tuple[np.ndarray, dict]:
    """Audio (float32 at ``sample_rate``) and parameters of utterance ``index`` (cached)."""
    p = utterance_params(index, pool_seed, pitch_range, rate_range, words)
    key = (sample_rate, p["text"], p["voice"], p["pitch"], p["rate"], p["gap"])
    if key in _cache:
        return _cache[key], p
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / (hashlib.sha1(repr(key).encode()).hexdigest()[:20] + ".npy")
        if path.exists():
            _cache[key] = np.load(path)
            return _cache[key], p
    audio, sr = _synthesise(p["text"], p["voice"], p["pitch"], p["rate"], p["gap"])
    if sr != sample_rate:
        audio = soxr.resample(audio, sr, sample_rate).astype(np.float32)
    if len(_cache) > 4096:
        _cache.clear()
    _cache[key] = audio
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, audio)
    return audio, p


def generate(
    rng: np.random.Generator,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    *,
    pool_size: int = 1024,
    pool_seed: int = 0,
    pitch_range: Range = (15.0, 85.0),
    rate_range: Range = (120.0, 220.0),
    words: tuple[int, int] = (3, 12),
    utterances: tuple[int, int] = (1, 2),
    cache_dir: str | Path | None = None,
) -> Sound:
    """One speech event: 1-2 utterances from the pool, trimmed to the active speech."""
    pieces, infos = [], []
    for j in range(randint(rng, utterances)):
        audio, p = utterance(
            int(rng.integers(pool_size)),
            sample_rate,
            pool_seed=pool_seed,
            pitch_range=pitch_range,
            rate_range=rate_range,
            words=words,
            cache_dir=cache_dir,
        )
        segs = active_segments(audio, sample_rate, -40.0, 0.3)
        if segs:
            audio = audio[int(segs[0][0] * sample_rate) : int(np.ceil(segs[-1][1] * sample_rate))]
        if j:
            pieces.append(np.zeros(round(uniform(rng, (0.2, 0.8)) * sample_rate), np.float32))
        pieces.append(audio * uniform(rng, (0.7, 1.0)))
        infos.append(p["voice"])
    x = np.concatenate(pieces)
    return Sound(normalize(x), active_segments(x, sample_rate, -40.0, 0.3), {"voices": infos})
