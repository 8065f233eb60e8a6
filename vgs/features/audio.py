"""Kaldi-compatible fbank and MFCC through kaldi-native-fbank.

Samples are scaled by `waveform_scale` (32768 by default) before extraction, so the numbers match
Kaldi's own tools, which read int16-range samples. Log-mel values from unit-range input would be
about 2*ln(32768) = 20.8 lower per bin.
"""
from __future__ import annotations

from math import gcd
from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np
from scipy.signal import resample_poly

from vgs.errors import AudioError
from vgs.features.config import AudioFeatureConfig


def resample(x: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling with scipy's anti-aliasing FIR (Kaiser window)."""
    if orig_rate == target_rate:
        return x
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
    if not np.all(np.isfinite(x)):
        raise AudioError(f"audio file {path} contains NaN or infinite samples")
    return x


def _frame_options(cfg: AudioFeatureConfig, frame_opts) -> None:
    frame_opts.samp_freq = float(cfg.sample_rate)
    frame_opts.frame_length_ms = cfg.frame_length_ms
    frame_opts.frame_shift_ms = cfg.frame_shift_ms
    frame_opts.dither = cfg.dither
    frame_opts.preemph_coeff = cfg.preemph_coeff
    frame_opts.remove_dc_offset = cfg.remove_dc_offset
    frame_opts.window_type = cfg.window_type
    frame_opts.round_to_power_of_two = cfg.round_to_power_of_two
    frame_opts.snip_edges = cfg.snip_edges


def knf_options(cfg: AudioFeatureConfig):
    if cfg.kind == "fbank":
        opts = knf.FbankOptions()
        opts.use_energy = cfg.use_energy
    else:
        opts = knf.MfccOptions()
        opts.num_ceps = cfg.num_ceps
        opts.use_energy = cfg.use_energy
        opts.cepstral_lifter = cfg.cepstral_lifter
    _frame_options(cfg, opts.frame_opts)
    opts.mel_opts.num_bins = cfg.num_mel_bins
    opts.mel_opts.low_freq = cfg.low_freq
    opts.mel_opts.high_freq = cfg.high_freq
    return opts


def apply_cmvn(feats: np.ndarray, mode: str) -> np.ndarray:
    """Per-utterance normalisation over time, per dimension."""
    if mode == "none" or len(feats) == 0:
        return feats
    out = feats - feats.mean(axis=0, keepdims=True)
    if mode == "meanvar":
        std = out.std(axis=0, keepdims=True)
        out = out / np.maximum(std, 1e-5)
    return out.astype(np.float32, copy=False)


def compute_features(x: np.ndarray, cfg: AudioFeatureConfig, opts=None,
                     path: str | Path = "<memory>") -> np.ndarray:
    """(T, D) float32 features of a mono waveform already at cfg.sample_rate."""
    opts = opts or knf_options(cfg)
    extractor = knf.OnlineFbank(opts) if cfg.kind == "fbank" else knf.OnlineMfcc(opts)
    extractor.accept_waveform(float(cfg.sample_rate), x * cfg.waveform_scale)
    extractor.input_finished()
    n = extractor.num_frames_ready
    if n == 0:
        raise AudioError(f"audio file {path} is too short for one {cfg.frame_length_ms} ms frame "
                         f"({len(x)} samples at {cfg.sample_rate} Hz)",
                         hint="set features.on_error: skip to leave such files out")
    feats = np.stack([extractor.get_frame(i) for i in range(n)]).astype(np.float32, copy=False)
    return apply_cmvn(feats, cfg.cmvn)
