"""Energy-based voice activity detection on log-mel (fbank) frames.

Works on features already in a store, so no waveform is needed. A frame's energy is the log of
its summed mel-band power, logsumexp over the bins of a log-mel frame (natural log). A frame is
speech when its energy is within `threshold_db` decibels of the loudest frame of the utterance;
the threshold is relative because recording level varies between speakers and sessions, while the
gap between a digit's vowel and the room noise around it does not vary much.

`trim_silence` keeps the span from the first to the last speech frame (plus `context_frames` on
each side), which is what "remove silence" means for isolated digits: pauses inside a word (the
closure before a stop consonant) are part of the word and are not cut out.
"""
from __future__ import annotations

import numpy as np

from vgs.errors import VgsError

# 10*log10(x) dB = ln(x) * 10/ln(10): convert a dB gap into a gap of natural-log energy.
_NATS_PER_DB = np.log(10.0) / 10.0


def frame_log_energy(logmel: np.ndarray) -> np.ndarray:
    """(T,) natural-log energy of each (T, D) log-mel frame: log(sum_d exp(logmel[t, d]))."""
    x = np.asarray(logmel, dtype=np.float64)
    if x.ndim != 2:
        raise VgsError(f"VAD needs (frames, bins) log-mel features, got shape {x.shape}")
    peak = x.max(axis=1, keepdims=True)
    return (peak[:, 0] + np.log(np.exp(x - peak).sum(axis=1))).astype(np.float64)


def speech_mask(logmel: np.ndarray, threshold_db: float = 40.0) -> np.ndarray:
    """(T,) bool: frames whose energy is at most `threshold_db` dB below the utterance's peak."""
    if threshold_db <= 0:
        raise VgsError(f"VAD threshold_db must be > 0 dB, got {threshold_db}")
    energy = frame_log_energy(logmel)
    if len(energy) == 0:
        return np.zeros(0, dtype=bool)
    return energy >= energy.max() - threshold_db * _NATS_PER_DB


def trim_silence(logmel: np.ndarray, threshold_db: float = 40.0, context_frames: int = 2,
                 min_frames: int = 1) -> np.ndarray:
    """Drop leading and trailing non-speech frames (see module doc).

    Keeps `context_frames` extra frames on each side so that soft onsets and releases that sit
    just under the threshold are not clipped, and never returns fewer than `min_frames` frames
    (or the whole utterance if it is shorter).
    """
    x = np.asarray(logmel)
    mask = speech_mask(x, threshold_db)
    if len(mask) == 0:
        return x
    speech = np.flatnonzero(mask)  # never empty: the peak frame always passes
    start = max(0, int(speech[0]) - context_frames)
    stop = min(len(x), int(speech[-1]) + 1 + context_frames)
    short = min(min_frames, len(x)) - (stop - start)
    if short > 0:  # widen symmetrically around the kept span, within the utterance
        start = max(0, start - (short + 1) // 2)
        stop = min(len(x), start + min(min_frames, len(x)))
        start = max(0, stop - min(min_frames, len(x)))
    return x[start:stop]
