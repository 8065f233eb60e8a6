"""Read audio headers and samples with clear errors (soundfile underneath).

libsndfile reads RIFF WAV, FLAC and uncompressed NIST SPHERE by content, whatever the file
extension (TIDIGITS names its SPHERE files *.wav). When it fails on a SPHERE file we read the
header ourselves, so a shorten-compressed file gets an error that names the conversion to run.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from vgs.corpora.wav import read_pcm16_wav
from vgs.errors import AudioError


@dataclass(frozen=True)
class AudioInfo:
    frames: int
    samplerate: int
    channels: int


def audio_info(path: str | Path) -> AudioInfo:
    path = Path(path)
    if not path.exists():
        raise AudioError(f"audio file {path} is missing",
                         hint="restore it, or re-run prepare so the manifest no longer lists it")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise _unreadable(path, exc) from None
    return AudioInfo(frames=int(info.frames), samplerate=int(info.samplerate), channels=int(info.channels))


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Samples as float32 in [-1, 1], shape (frames, channels), and the sample rate."""
    fast = read_pcm16_wav(path)
    if fast is not None:
        samples, rate = fast
    else:
        path = Path(path)
        if not path.exists():
            raise AudioError(f"audio file {path} is missing",
                             hint="restore it, or re-run prepare so the manifest no longer lists it")
        try:
            samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise _unreadable(path, exc) from None
    if samples.shape[0] == 0:
        raise AudioError(f"audio file {path} is empty (0 samples)",
                         hint="remove it from the corpus, or set features.on_error: skip")
    return samples, int(rate)


def _unreadable(path: Path, exc: Exception) -> AudioError:
    """The most specific explanation we have for a file libsndfile refused."""
    from vgs.corpora.sphere import check_sphere_readable, is_sphere

    if is_sphere(path):
        try:
            check_sphere_readable(path)
        except AudioError as specific:
            return specific
    return AudioError(f"audio file {path} is corrupt or not a supported format: {exc}",
                      hint="replace the file, or set features.on_error: skip to leave it out")
