"""kaldi-native-fbank's view of an AudioFeatureConfig: its options object, the frame geometry in
samples as knf computes it, and frames through knf's Python binding.

The bottom of vgs/features: config.py (to let knf judge a config when it is loaded), knf_bulk.py
(to check its C entry point against the binding) and audio.py all read it, and it reads none of
them, so the package has no import circle.
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import kaldi_native_fbank as knf
import numpy as np

if TYPE_CHECKING:
    from vgs.features.config import AudioFeatureConfig


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


@lru_cache(maxsize=64)
def frame_geometry(cfg: AudioFeatureConfig) -> tuple[int, int]:
    """(window size, window shift) in samples, with the float32 arithmetic knf uses."""
    ms_to_samples = np.float32(cfg.sample_rate) * np.float32(0.001)
    return (int(ms_to_samples * np.float32(cfg.frame_length_ms)),
            int(ms_to_samples * np.float32(cfg.frame_shift_ms)))


def python_binding_frames(cfg: AudioFeatureConfig, scaled: np.ndarray, opts=None) -> np.ndarray:
    """(T, D) frames of an already scaled float32 waveform through knf's Python binding."""
    opts = opts or knf_options(cfg)
    extractor = knf.OnlineFbank(opts) if cfg.kind == "fbank" else knf.OnlineMfcc(opts)
    extractor.accept_waveform(float(cfg.sample_rate), memoryview(np.ascontiguousarray(scaled, dtype=np.float32)))
    extractor.input_finished()
    count = extractor.num_frames_ready
    # get_frame returns a view of the extractor's buffer; np.array copies them all in one go.
    return np.array(list(map(extractor.get_frame, range(count))), dtype=np.float32).reshape(count, cfg.dim)
