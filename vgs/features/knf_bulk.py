"""kaldi-native-fbank without its per-sample Python conversion: a small C entry point, via ctypes.

knf's Python binding converts the waveform to a `std::vector<float>` one element at a time and
returns frames one call at a time. On FSDD that is about 0.4 s of a 1.3 s extraction. knf_bulk.cc
runs the same knf `OnlineFbank` / `OnlineMfcc` classes (the ones compiled into knf's extension
module, whose symbols it exports) on a pointer to the samples and copies frames out in C.

The library is compiled on first use with the system C++ compiler (`CXX`, else c++/g++), against
the headers in the installed knf wheel, and cached in `$VGS_CACHE_DIR` (default ~/.cache/vgs),
keyed by this source, the knf version and the compiler. Before a feature config uses it, its
output on a probe waveform must equal the Python binding's bit for bit. When anything fails (no
compiler, headers missing, a knf release that changed its classes, a mismatch), a one-time
warning says why and extraction uses the Python binding, which gives the same features, slower.
`VGS_KNF_BULK=0` turns it off.

The same library reads 16-bit PCM mono WAV files straight into the stream that batch extraction
runs over (read_pcm16_stream), so that two worker threads do not queue for the GIL over each
file. It takes only what vgs/corpora/wav.py's reader reads to the same samples, and leaves every
other file to the Python path, which reads, resamples or rejects it as before.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import sys
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("knf_bulk.cc")
ABI_VERSION = 2


class KnfOptions(ctypes.Structure):
    """Mirror of VgsKnfOptions in knf_bulk.cc."""
    _fields_ = [("is_mfcc", ctypes.c_int32), ("samp_freq", ctypes.c_float),
                ("frame_length_ms", ctypes.c_float), ("frame_shift_ms", ctypes.c_float),
                ("dither", ctypes.c_float), ("preemph_coeff", ctypes.c_float),
                ("remove_dc_offset", ctypes.c_int32), ("round_to_power_of_two", ctypes.c_int32),
                ("snip_edges", ctypes.c_int32), ("window_type", ctypes.c_char * 32),
                ("num_bins", ctypes.c_int32), ("low_freq", ctypes.c_float), ("high_freq", ctypes.c_float),
                ("use_energy", ctypes.c_int32), ("num_ceps", ctypes.c_int32),
                ("cepstral_lifter", ctypes.c_float)]


class BulkUnavailable(RuntimeError):
    """Why the C entry point cannot be used; extraction falls back to knf's Python binding."""


def knf_bulk_options(cfg) -> KnfOptions:
    """The C options for an AudioFeatureConfig (the same fields as kaldi_options.knf_options sets)."""
    return KnfOptions(
        is_mfcc=int(cfg.kind == "mfcc"), samp_freq=float(cfg.sample_rate),
        frame_length_ms=cfg.frame_length_ms, frame_shift_ms=cfg.frame_shift_ms, dither=cfg.dither,
        preemph_coeff=cfg.preemph_coeff, remove_dc_offset=int(cfg.remove_dc_offset),
        round_to_power_of_two=int(cfg.round_to_power_of_two), snip_edges=int(cfg.snip_edges),
        window_type=cfg.window_type.encode(), num_bins=cfg.num_mel_bins, low_freq=cfg.low_freq,
        high_freq=cfg.high_freq, use_energy=int(cfg.use_energy), num_ceps=cfg.num_ceps or 0,
        cepstral_lifter=cfg.cepstral_lifter)


def _knf_paths() -> tuple[Path, Path, str]:
    """(knf's extension module, its include directory, its version)."""
    import kaldi_native_fbank as knf
    from importlib.metadata import version

    package = Path(knf.__file__).parent
    modules = sorted(package.glob("lib/_kaldi_native_fbank*.so")) + sorted(package.glob("_kaldi_native_fbank*.so"))
    include = package / "include"
    if not modules:
        raise BulkUnavailable(f"no _kaldi_native_fbank*.so under {package}")
    if not (include / "kaldi-native-fbank/csrc/online-feature.h").exists():
        raise BulkUnavailable(f"kaldi-native-fbank {version('kaldi-native-fbank')} ships no C++ headers "
                              f"(looked in {include})")
    return modules[0], include, version("kaldi-native-fbank")


def _string_abi(module: Path) -> int:
    """The _GLIBCXX_USE_CXX11_ABI value knf was built with: its options structs hold a std::string,
    so ours must have the same layout. knf functions taking a string name it `Ss` in the old ABI
    and `NSt7__cxx1112basic_string...` in the new one."""
    knf_symbols = re.findall(rb"_ZN?K?3knf[0-9A-Za-z_]+", module.read_bytes())
    if any(b"cxx11" in name for name in knf_symbols):
        return 1
    if any(b"RKSs" in name for name in knf_symbols):
        return 0
    raise BulkUnavailable(f"cannot tell which C++ string ABI {module.name} uses")


def _compiler() -> str:
    for candidate in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    raise BulkUnavailable("no C++ compiler found (set CXX, or install g++)")


def cache_dir() -> Path:
    return Path(os.environ.get("VGS_CACHE_DIR") or Path.home() / ".cache" / "vgs")


def build(module: Path, include: Path, knf_version: str) -> Path:
    """The compiled library for this source, knf and compiler; built once, then reused."""
    cxx = _compiler()
    abi = _string_abi(module)
    key = hashlib.sha256(b"\0".join([SOURCE.read_bytes(), knf_version.encode(), str(module).encode(),
                                     cxx.encode(), str(abi).encode()])).hexdigest()[:16]
    target = cache_dir() / f"knf_bulk-{key}.so"
    if target.exists():
        return target
    # Unique per process, then renamed: two stages building at once each finish their own file.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    cmd = [cxx, "-O2", "-std=c++17", "-shared", "-fPIC", f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
           "-I", str(include), str(SOURCE), "-o", str(tmp)]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise BulkUnavailable(f"compiling {SOURCE.name} failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
        os.replace(tmp, target)
    except subprocess.TimeoutExpired:
        raise BulkUnavailable(f"compiling {SOURCE.name} took over 5 minutes ({' '.join(cmd)})") from None
    except OSError as exc:
        raise BulkUnavailable(f"cannot build into {target.parent} ({exc}); set VGS_CACHE_DIR to a writable "
                              "directory") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return target


@lru_cache(maxsize=1)
def _library():
    """The loaded library, or the BulkUnavailable explaining why there is none."""
    if os.environ.get("VGS_KNF_BULK", "1") == "0":
        return BulkUnavailable("turned off by VGS_KNF_BULK=0")
    try:
        module, include, knf_version = _knf_paths()
        path = build(module, include, knf_version)
        # Python loads extension modules with their symbols private; make knf's visible to ours.
        ctypes.CDLL(str(module), mode=ctypes.RTLD_GLOBAL)
        lib = ctypes.CDLL(str(path))
    except BulkUnavailable as exc:
        return exc
    except OSError as exc:  # the loader: unresolved symbols from a knf that changed
        return BulkUnavailable(f"loading the compiled library failed: {exc}")
    if lib.vgs_knf_abi_version() != ABI_VERSION:
        return BulkUnavailable(f"{path} is not a build of this {SOURCE.name}")
    lib.vgs_knf_compute.restype = ctypes.c_int64
    lib.vgs_knf_compute.argtypes = [ctypes.POINTER(KnfOptions), ctypes.c_void_p, ctypes.c_int64,
                                    ctypes.c_void_p, ctypes.c_int64, ctypes.c_char_p, ctypes.c_int64]
    lib.vgs_read_pcm16_stream.restype = ctypes.c_int64
    lib.vgs_read_pcm16_stream.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int32, ctypes.c_int32,
                                          ctypes.c_int32, ctypes.c_int64, ctypes.c_float, ctypes.c_void_p,
                                          ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    return lib


def compute_raw(cfg, samples: np.ndarray, expected_frames: int) -> np.ndarray:
    """knf features of `samples` (float32, already scaled) with the C entry point, as (T, dim).

    `expected_frames` sizes the output; when knf makes a different number the call is repeated
    with the right size, so the answer never depends on the guess."""
    lib = _library()
    if isinstance(lib, BulkUnavailable):
        raise lib
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    opts = knf_bulk_options(cfg)
    error = ctypes.create_string_buffer(1024)
    capacity = max(expected_frames, 0)
    while True:
        out = np.empty((capacity, cfg.dim), dtype=np.float32)
        frames = lib.vgs_knf_compute(ctypes.byref(opts), samples.ctypes.data, len(samples), out.ctypes.data,
                                     capacity, error, len(error))
        if frames < 0:
            raise RuntimeError(f"kaldi-native-fbank failed on features.{cfg.name}: {error.value.decode()}")
        if frames <= capacity:
            return out[:frames]
        capacity = frames


def read_pcm16_stream(paths: list[str], sample_rate: int, shift: int, min_samples: int, scale: float,
                      capacity: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read WAV files end to end into one float32 stream, in C (see vgs_read_pcm16_stream).

    Returns (stream, starts, lengths): file i's samples are stream[starts[i]:starts[i] + lengths[i]],
    each start a multiple of `shift`, or lengths[i] == -1 when the file is not 16-bit PCM mono at
    `sample_rate` with at least `min_samples` samples, and must be read the usual way. `capacity`
    is a guess of the stream's length; a wrong one costs a second read, never a wrong result.
    """
    lib = _library()
    if isinstance(lib, BulkUnavailable):
        raise lib
    n = len(paths)
    encoded = (ctypes.c_char_p * n)(*(os.fsencode(p) for p in paths))
    starts = np.empty(n, dtype=np.int64)
    lengths = np.empty(n, dtype=np.int64)
    capacity = max(int(capacity), 0)
    while True:
        stream = np.empty(capacity, dtype=np.float32)
        needed = lib.vgs_read_pcm16_stream(encoded, n, sample_rate, shift, min_samples, scale,
                                           stream.ctypes.data, capacity, starts.ctypes.data, lengths.ctypes.data)
        if needed <= capacity:
            return stream[:needed], starts, lengths
        capacity = needed


_PROBE_SECONDS = 0.5


def _probe_signal(n: int, sample_rate: int) -> np.ndarray:
    """Noise plus a tone, at int16 scale: every mel bin and every frame gets non-trivial values.

    The noise is a hash of the sample index (murmur3's finaliser), not numpy.random: importing
    that costs 10 ms, and this runs at the start of every extraction."""
    with np.errstate(over="ignore"):
        h = np.arange(n, dtype=np.uint32) * np.uint32(0x9E3779B9)
        h ^= h >> np.uint32(16)
        h *= np.uint32(0x85EBCA6B)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0xC2B2AE35)
        h ^= h >> np.uint32(16)
    noise = h.astype(np.float32) / np.float32(2 ** 32) - np.float32(0.5)  # uniform on [-0.5, 0.5)
    tone = np.sin(np.arange(n) * (2 * np.pi * 440 / sample_rate))
    return (noise * 10000 + 8000 * tone).astype(np.float32)


@lru_cache(maxsize=64)
def usable_for(cfg) -> bool:
    """Whether the C entry point gives exactly knf's Python binding's frames for this config.

    Warns once, with the reason, when it does not."""
    from vgs.features.kaldi_options import python_binding_frames

    lib = _library()
    if isinstance(lib, BulkUnavailable):
        _warn_once(str(lib))
        return False
    n = int(cfg.sample_rate * _PROBE_SECONDS)
    probe = _probe_signal(n, cfg.sample_rate)
    expected = python_binding_frames(cfg, probe)
    got = compute_raw(cfg, probe, len(expected))
    if got.shape != expected.shape or not np.array_equal(got, expected):
        _warn_once(f"its output differs from the Python binding's for features.{cfg.name} "
                   f"(shapes {got.shape} and {expected.shape})")
        return False
    return True


@lru_cache(maxsize=None)
def _warn_once(reason: str) -> None:
    warnings.warn(f"kaldi-native-fbank's C entry point is not used ({reason}); extraction uses knf's "
                  "Python binding instead: the same features, about 30% slower", RuntimeWarning, stacklevel=3)


def status() -> str:
    """One line for `vgs` diagnostics and the benchmark: which path extraction takes, and why."""
    lib = _library()
    if isinstance(lib, BulkUnavailable):
        return f"knf Python binding ({lib})"
    return "knf C entry point (vgs/features/knf_bulk.cc via ctypes)"


if __name__ == "__main__":  # python -m vgs.features.knf_bulk: build now and say what happened
    print(status())
    sys.exit(0 if not isinstance(_library(), BulkUnavailable) else 1)
