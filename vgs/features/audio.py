"""Kaldi-compatible fbank and MFCC through kaldi-native-fbank.

Samples are scaled by `waveform_scale` (32768 by default) before extraction, so the numbers match
Kaldi's own tools, which read int16-range samples. Log-mel values from unit-range input would be
about 2*ln(32768) = 20.8 lower per bin.

kaldi-native-fbank's Python binding takes its waveform as a sequence it converts sample by sample,
so the frames come from knf's own classes through a small C entry point when it can be built
(vgs/features/knf_bulk.py, checked against the binding bit for bit), and through the binding
otherwise (samples as a memoryview of a float32 array, much faster than a numpy array). Building
an extractor costs as much as computing ten frames, so `compute_features_batch` runs one extractor
over many utterances laid end to end (see there); the result is bit-identical to one extractor per
utterance.
"""
from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np

from vgs.errors import AudioError
from vgs.features import knf_bulk
from vgs.features.config import AudioFeatureConfig
# kaldi-native-fbank's view of a config lives below this module (config.py and knf_bulk.py read it
# too); its names stay importable from here.
from vgs.features.kaldi_options import frame_geometry, knf_options, python_binding_frames  # noqa: F401


def resample(x: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling with scipy's anti-aliasing FIR (Kaiser window)."""
    if orig_rate == target_rate:
        return x
    from scipy.signal import resample_poly  # imported here: scipy.signal takes seconds to import

    g = gcd(orig_rate, target_rate)
    return resample_poly(x, target_rate // g, orig_rate // g).astype(np.float32)


def conform_waveform(samples: np.ndarray, rate: int, cfg: AudioFeatureConfig,
                     path: str | Path = "<memory>") -> np.ndarray:
    """Mono float32 at cfg.sample_rate, or an AudioError naming the file and the option to change."""
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.shape[0] == 0:
        raise AudioError(f"audio file {path} is empty (0 samples)",
                         hint="remove it from the corpus, or set features.on_error: skip")
    if samples.shape[1] > 1:
        if not cfg.downmix:
            raise AudioError(f"audio file {path} has {samples.shape[1]} channels; features.{cfg.name}"
                             " expects mono", hint=f"set features.{cfg.name}.downmix: true to average channels")
        samples = samples.mean(axis=1, keepdims=True)
    x = samples[:, 0].astype(np.float32, copy=False)
    if rate != cfg.sample_rate:
        if not cfg.resample:
            raise AudioError(f"audio file {path} is {rate} Hz; features.{cfg.name} expects {cfg.sample_rate} Hz",
                             hint=f"set features.{cfg.name}.resample: true, or convert the corpus")
        x = resample(x, rate, cfg.sample_rate)
    if not np.isfinite(x.sum(dtype=np.float64)):  # NaN and inf survive the sum; cheaper than isfinite(x)
        raise AudioError(f"audio file {path} contains NaN or infinite samples")
    return x


def apply_cmvn(feats: np.ndarray, mode: str) -> np.ndarray:
    """Per-utterance normalisation over time, per dimension."""
    if mode == "none" or len(feats) == 0:
        return feats
    out = feats - feats.mean(axis=0, keepdims=True)
    if mode == "meanvar":
        std = out.std(axis=0, keepdims=True)
        out = out / np.maximum(std, 1e-5)
    return out.astype(np.float32, copy=False)


def _too_short(x: np.ndarray, cfg: AudioFeatureConfig, path) -> AudioError:
    return AudioError(f"audio file {path} is too short for one {cfg.frame_length_ms} ms frame "
                      f"({len(x)} samples at {cfg.sample_rate} Hz)",
                      hint="set features.on_error: skip to leave such files out")


def check_long_enough(x: np.ndarray, cfg: AudioFeatureConfig, path: str | Path = "<memory>") -> None:
    """AudioError naming the file when it cannot yield one frame (only snip_edges drops frames)."""
    size, _ = frame_geometry(cfg)
    if len(x) == 0 or (cfg.snip_edges and len(x) < size):
        raise _too_short(x, cfg, path)


def expected_num_frames(num_samples: int, cfg: AudioFeatureConfig) -> int:
    """Kaldi's frame count (feature-window.cc NumFrames) for an input of num_samples."""
    size, shift = frame_geometry(cfg)
    if cfg.snip_edges:
        return 0 if num_samples < size else 1 + (num_samples - size) // shift
    return (num_samples + shift // 2) // shift


def releases_gil(cfg: AudioFeatureConfig) -> bool:
    """Whether cfg's frames come from knf's C entry point, which runs outside the GIL (so threads
    can share the work); otherwise they come from knf's Python binding."""
    return cfg.dither == 0 and knf_bulk.usable_for(cfg)


def _knf_frames(cfg: AudioFeatureConfig, opts, samples: np.ndarray) -> np.ndarray:
    scaled = np.ascontiguousarray(samples * np.float32(cfg.waveform_scale), dtype=np.float32)
    # With dither the two paths draw different noise, so there is nothing to check the C one by.
    if releases_gil(cfg):
        return knf_bulk.compute_raw(cfg, scaled, expected_num_frames(len(scaled), cfg))
    return python_binding_frames(cfg, scaled, opts)


def compute_features(x: np.ndarray, cfg: AudioFeatureConfig, opts=None,
                     path: str | Path = "<memory>") -> np.ndarray:
    """(T, D) float32 features of a mono waveform already at cfg.sample_rate."""
    frames = _knf_frames(cfg, opts, np.asarray(x, dtype=np.float32))
    if len(frames) == 0:
        raise _too_short(x, cfg, path)
    return apply_cmvn(frames, cfg.cmvn)


def reads_files_in_c(cfg: AudioFeatureConfig) -> bool:
    """Whether batches of files can be read and extracted entirely in C (features_of_pcm16_files)."""
    return cfg.snip_edges and cfg.dither == 0 and releases_gil(cfg)


def features_of_pcm16_files(paths: list[str], cfg: AudioFeatureConfig, capacity: int) -> list[np.ndarray | None]:
    """Features of each file that knf_bulk's C reader takes (16-bit PCM mono WAV at cfg.sample_rate,
    at least one frame long), laid end to end as in compute_features_batch; None for every other
    file, which the caller reads and checks the usual way.

    Reading, layout and extraction all run outside the GIL: with the GIL held for each file, two
    worker threads spent as long waiting for each other as reading. `capacity` is a guess of the
    stream's length in samples (see knf_bulk.read_pcm16_stream). Requires reads_files_in_c(cfg).
    """
    size, shift = frame_geometry(cfg)
    stream, starts, lengths = knf_bulk.read_pcm16_stream(paths, cfg.sample_rate, shift, size,
                                                         cfg.waveform_scale, capacity)
    if not (lengths >= 0).any():
        return [None] * len(paths)
    expected = expected_num_frames(len(stream), cfg)
    every = knf_bulk.compute_raw(cfg, stream, expected)
    if len(every) != expected:  # the frame geometry disagrees with knf's; the slow path is always right
        return [None] * len(paths)
    out = []
    for start, length in zip(starts.tolist(), lengths.tolist()):
        if length < 0:
            out.append(None)
        else:
            first = start // shift
            out.append(apply_cmvn(every[first:first + expected_num_frames(length, cfg)], cfg.cmvn))
    return out


def compute_features_batch(waves: list[np.ndarray], cfg: AudioFeatureConfig, opts=None) -> list[np.ndarray]:
    """compute_features for each waveform (each long enough: see check_long_enough).

    With snip_edges and no dither every Kaldi frame depends only on its own window of samples.
    The waveforms are then laid end to end, each zero-padded to a whole number of frame shifts,
    so utterance u's frame k is frame (start_u / shift + k) of the joined stream; frames that
    straddle two utterances are computed but not used. Other configs take one extractor each.
    """
    opts = opts or knf_options(cfg)
    if len(waves) < 2 or not cfg.snip_edges or cfg.dither != 0:
        return [compute_features(x, cfg, opts) for x in waves]
    size, shift = frame_geometry(cfg)
    spans, starts, start = [], [], 0
    for x in waves:
        if len(x) < size:
            raise _too_short(x, cfg, "<batch item>")
        spans.append((start // shift, 1 + (len(x) - size) // shift))
        starts.append(start)
        start += -(-len(x) // shift) * shift  # padded to whole shifts
    stream = np.zeros(start, dtype=np.float32)
    for x, at in zip(waves, starts):
        stream[at:at + len(x)] = x
    every = _knf_frames(cfg, opts, stream)  # one array of all frames, then a view per utterance
    if len(every) != 1 + (start - size) // shift:
        # The frame geometry disagrees with knf's; the slow path is always right.
        return [compute_features(x, cfg, opts) for x in waves]
    return [apply_cmvn(every[first:first + count], cfg.cmvn) for first, count in spans]
