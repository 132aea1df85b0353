"""VGGish's log-mel frontend in NumPy (a port of Google's `mel_features.py` recipe, vectorised over pieces).

Magnitude STFT (25 ms periodic-Hann window, 10 ms hop, FFT 512) -> 64 triangular mel bands between
125 and 7500 Hz on the HTK-style mel scale 1127 ln(1 + f / 700) (DC bin zeroed) -> log(x + 0.01).
No padding and no context across pieces: each piece gives 1 + (n - 400) // 160 frames.
"""

from __future__ import annotations

import functools

import numpy as np

from soccer_highlights.common.constants import SAMPLE_RATE

WINDOW = 400  # 25 ms
HOP = 160  # 10 ms
FFT = 512  # next power of two >= WINDOW
MEL_BANDS = 64
MEL_LOW_HZ = 125.0
MEL_HIGH_HZ = 7500.0
LOG_OFFSET = 0.01
FEATURE_FRAMES = 46  # V&D: frames kept per 0.5 s piece (of the 48 a piece yields)
EMBEDDING_FRAMES = 96  # Google's 0.96 s example
EMBEDDING_SAMPLES = (EMBEDDING_FRAMES - 1) * HOP + WINDOW  # 15600 samples make 96 frames
EMBEDDING_HOP_SAMPLES = EMBEDDING_FRAMES * HOP  # examples do not overlap in frames


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, np.float64) / 700.0)


def periodic_hann(n: int) -> np.ndarray:
    """Hann window of period n (not the symmetric one `np.hanning` returns)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


@functools.lru_cache(maxsize=4)
def mel_matrix(
    num_bins: int = FFT // 2 + 1,
    bands: int = MEL_BANDS,
    rate: int = SAMPLE_RATE,
    low: float = MEL_LOW_HZ,
    high: float = MEL_HIGH_HZ,
) -> np.ndarray:
    """[num_bins, bands] triangular weights: band i rises from edge i to centre i+1, falls to edge i+2."""
    bin_mel = hz_to_mel(np.linspace(0.0, rate / 2.0, num_bins))
    edges = np.linspace(hz_to_mel(low), hz_to_mel(high), bands + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel[:, None] - lower) / (centre - lower)
    falling = (upper - bin_mel[:, None]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0  # the DC bin carries no mel energy
    weights.flags.writeable = False
    return weights


def log_mel(pieces: np.ndarray, frames: int | None = None) -> np.ndarray:
    """[K, n] waveforms (float, about [-1, 1], 16 kHz) -> [K, frames, 64] float32 log-mel patches.

    `frames` keeps the first frames of each piece (46 for V&D's 0.5 s pieces); None keeps all.
    """
    pieces = np.asarray(pieces, np.float64)
    if pieces.ndim == 1:
        pieces = pieces[None]
    available = 1 + (pieces.shape[1] - WINDOW) // HOP
    frames = available if frames is None else frames
    if frames > available:
        raise ValueError(f"{pieces.shape[1]} samples give {available} frames, fewer than {frames}")
    starts = np.arange(frames) * HOP
    windows = pieces[:, starts[:, None] + np.arange(WINDOW)]  # [K, frames, WINDOW]
    spectrum = np.abs(np.fft.rfft(windows * periodic_hann(WINDOW), FFT))
    return np.log(spectrum @ mel_matrix() + LOG_OFFSET).astype(np.float32)


def split_examples(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 1-D waveform -> ([K, 15600] windows of the complete 0.96 s examples, the samples not yet covered)."""
    count = 0 if len(samples) < EMBEDDING_SAMPLES else 1 + (len(samples) - EMBEDDING_SAMPLES) // EMBEDDING_HOP_SAMPLES
    starts = np.arange(count) * EMBEDDING_HOP_SAMPLES
    return samples[starts[:, None] + np.arange(EMBEDDING_SAMPLES)], samples[count * EMBEDDING_HOP_SAMPLES :]


def pad_example(rest: np.ndarray) -> np.ndarray:
    """The final, incomplete example zero-padded to [1, 15600] (Google's framing drops it; we keep coverage)."""
    out = np.zeros((1, EMBEDDING_SAMPLES), np.float32)
    out[0, : len(rest)] = rest[:EMBEDDING_SAMPLES]
    return out
