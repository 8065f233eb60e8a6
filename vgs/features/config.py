"""Named feature configurations, validated from params.yaml `features.<name>`.

Audio configs map one-to-one onto kaldi-native-fbank options. Image configs scale pixels,
optionally resize, and keep one grey channel or three RGB channels. The hash of a config's
canonical JSON is stored with every feature store, so a store can always be traced to the exact
options that made it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from vgs.errors import ParamError
from vgs.params import Params

WINDOWS = ("povey", "hamming", "hanning", "rectangular", "blackman", "sine")
CMVN = ("none", "mean", "meanvar")
AUDIO_KINDS = ("fbank", "mfcc")
IMAGE_KINDS = ("image",)
RESIZE_METHODS = ("bilinear", "pad")
GREY, RGB = 1, 3
IMAGE_CHANNELS = (GREY, RGB)
# Reserved keys that sit beside the named configs in the `features` section.
NON_CONFIG_KEYS = ("on_error", "num_workers", "shard_frames")


@dataclass(frozen=True)
class AudioFeatureConfig:
    name: str
    kind: str
    sample_rate: int
    resample: bool
    downmix: bool
    frame_length_ms: float
    frame_shift_ms: float
    window_type: str
    num_mel_bins: int
    low_freq: float
    high_freq: float
    dither: float
    snip_edges: bool
    preemph_coeff: float
    remove_dc_offset: bool
    round_to_power_of_two: bool
    use_energy: bool
    num_ceps: int | None
    cepstral_lifter: float
    waveform_scale: float
    cmvn: str

    modality = "audio"

    @property
    def dim(self) -> int:
        if self.kind == "mfcc":
            return self.num_ceps
        return self.num_mel_bins + (1 if self.use_energy else 0)

    def as_dict(self) -> dict:
        return asdict(self)

    def hash(self) -> str:
        return config_hash(self.as_dict())


@dataclass(frozen=True)
class ImageFeatureConfig:
    name: str
    kind: str
    size: int | None
    resize_method: str
    scale: float
    # The one place the default lives: configs written before colour existed are grey.
    channels: int = GREY

    modality = "image"

    def as_dict(self) -> dict:
        return asdict(self)

    def hash(self) -> str:
        return config_hash(self.as_dict())


def config_hash(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def feature_config_names(features: Params) -> list[str]:
    return [k for k in features.keys() if k not in NON_CONFIG_KEYS]


def load_feature_config(params: Params, name: str) -> AudioFeatureConfig | ImageFeatureConfig:
    """Validate `features.<name>` and return it as a config object."""
    features = params.section("features")
    names = feature_config_names(features)
    if name not in names:
        raise ParamError(f"unknown feature config {name!r}",
                         hint="known configs in params.yaml `features`: " + ", ".join(sorted(names)))
    c = features.section(name)
    kind = c.str("kind", choices=AUDIO_KINDS + IMAGE_KINDS)
    if kind in IMAGE_KINDS:
        channels = c.int("channels", ImageFeatureConfig.channels)
        if channels not in IMAGE_CHANNELS:
            raise ParamError(f"{c.key('channels')} must be 1 (grey) or 3 (RGB), got {channels} ({c.source})")
        return ImageFeatureConfig(
            name=name, kind=kind,
            size=c.int("size", None, min=1) if c.raw("size", None) is not None else None,
            resize_method=c.str("resize_method", "bilinear", choices=RESIZE_METHODS),
            scale=c.float("scale", 1 / 255, min=0),
            channels=channels,
        )
    sample_rate = c.int("sample_rate", min=1000)
    frame_length_ms = c.float("frame_length_ms", 25.0, min=1.0)
    frame_shift_ms = c.float("frame_shift_ms", 10.0, min=0.1)
    num_mel_bins = c.int("num_mel_bins", 23, min=1)
    low_freq = c.float("low_freq", 20.0, min=0.0)
    high_freq = c.float("high_freq", 0.0)
    nyquist = sample_rate / 2
    effective_high = high_freq if high_freq > 0 else nyquist + high_freq
    if not low_freq < effective_high <= nyquist:
        key = "high_freq" if effective_high > nyquist else "low_freq"
        raise ParamError(f"features.{name}.{key}: need low_freq < high_freq <= sample_rate/2 "
                         f"(low {low_freq}, high {effective_high}, Nyquist {nyquist}) ({c.source})",
                         hint="high_freq 0 means Nyquist; a negative value is an offset below it")
    num_ceps = None
    if kind == "mfcc":
        num_ceps = c.int("num_ceps", 13, min=1)
        if num_ceps > num_mel_bins:
            raise ParamError(f"features.{name}.num_ceps ({num_ceps}) must not exceed num_mel_bins "
                             f"({num_mel_bins}) (params.yaml)")
    cfg = AudioFeatureConfig(
        name=name, kind=kind, sample_rate=sample_rate,
        resample=c.bool("resample", True), downmix=c.bool("downmix", True),
        frame_length_ms=frame_length_ms, frame_shift_ms=frame_shift_ms,
        window_type=c.str("window_type", "povey", choices=WINDOWS),
        num_mel_bins=num_mel_bins, low_freq=low_freq, high_freq=high_freq,
        dither=c.float("dither", 0.0, min=0.0),
        snip_edges=c.bool("snip_edges", True),
        preemph_coeff=c.float("preemph_coeff", 0.97, min=0.0, max=1.0),
        remove_dc_offset=c.bool("remove_dc_offset", True),
        round_to_power_of_two=c.bool("round_to_power_of_two", True),
        use_energy=c.bool("use_energy", False),
        num_ceps=num_ceps,
        cepstral_lifter=c.float("cepstral_lifter", 22.0, min=0.0),
        waveform_scale=c.float("waveform_scale", 32768.0, min=0.0),
        cmvn=c.str("cmvn", "none", choices=CMVN),
    )
    _check_with_knf(cfg, c.source)
    return cfg


def _check_with_knf(cfg: AudioFeatureConfig, source: str) -> None:
    """Let kaldi-native-fbank judge the combination (e.g. too many mel bins for the FFT size) now,
    so the error names the config instead of surfacing as a ValueError inside a worker."""
    import kaldi_native_fbank as knf

    from vgs.features.kaldi_options import frame_geometry, knf_options

    for key, samples in zip(("frame_length_ms", "frame_shift_ms"), frame_geometry(cfg)):
        # knf truncates to whole samples; a zero shift kills the process with SIGFPE.
        if samples < 1:
            raise ParamError(f"features.{cfg.name}.{key} = {getattr(cfg, key)} is less than one sample at "
                             f"{cfg.sample_rate} Hz ({source})", hint=f"use at least {1000 / cfg.sample_rate:g} ms")
    try:
        knf.OnlineFbank(knf_options(cfg)) if cfg.kind == "fbank" else knf.OnlineMfcc(knf_options(cfg))
    except (ValueError, RuntimeError) as exc:
        key = f"features.{cfg.name}" + (".num_mel_bins" if "mel_bins" in str(exc) else "")
        raise ParamError(f"{key}: kaldi-native-fbank rejects these options: {exc} ({source})",
                         hint="for too many mel bins: lower num_mel_bins, or raise frame_length_ms "
                              "(a longer FFT has more frequency bins)") from None
