"""The C entry point into kaldi-native-fbank (vgs/features/knf_bulk.cc): the same frames as knf's
Python binding, a cached build, and a fallback with a stated reason when it cannot be used."""
import shutil
import subprocess
import warnings

import numpy as np
import pytest

from feature_helpers import cfg_of, speechlike
from vgs.features import audio, knf_bulk

needs_compiler = pytest.mark.skipif(
    not any(shutil.which(c) for c in ("c++", "g++", "clang++")), reason="no C++ compiler on this machine")


@pytest.fixture
def fresh_bulk_state():
    """Forget the loaded library, the per-config verdicts and the warnings given, before and after."""
    def clear():
        knf_bulk._library.cache_clear()
        knf_bulk.usable_for.cache_clear()
        knf_bulk._warn_once.cache_clear()
    clear()
    yield
    clear()


@needs_compiler
@pytest.mark.parametrize("name,override", [
    ("fbank80", {}), ("logmel40", {}), ("mfcc40", {}), ("logmel96", {}),
    ("fbank80", {"use_energy": True}),
    ("fbank80", {"snip_edges": False}),
    ("fbank80", {"remove_dc_offset": False, "preemph_coeff": 0.0, "low_freq": 100, "high_freq": 3000}),
    ("mfcc40", {"round_to_power_of_two": False, "use_energy": True, "cepstral_lifter": 0.0}),
    ("fbank80_16k", {}),
])
def test_c_entry_point_gives_the_python_bindings_frames_bit_for_bit(name, override):
    cfg = cfg_of(name, **override)
    assert knf_bulk.usable_for(cfg), knf_bulk.status()
    x = speechlike(2 * cfg.sample_rate, seed=3, rate=cfg.sample_rate) * np.float32(cfg.waveform_scale)
    expected = audio.python_binding_frames(cfg, x)
    got = knf_bulk.compute_raw(cfg, x, audio.expected_num_frames(len(x), cfg))
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


@needs_compiler
def test_a_wrong_frame_count_guess_does_not_change_the_answer():
    cfg = cfg_of("fbank80")
    x = speechlike(5000) * np.float32(32768)
    right = audio.expected_num_frames(len(x), cfg)
    exact = knf_bulk.compute_raw(cfg, x, right)
    assert len(exact) == right == len(audio.python_binding_frames(cfg, x))
    for guess in (0, 1, right - 1, right + 9):
        np.testing.assert_array_equal(knf_bulk.compute_raw(cfg, x, guess), exact)


@needs_compiler
def test_the_build_is_cached_and_not_repeated(tmp_path, monkeypatch):
    monkeypatch.setenv("VGS_CACHE_DIR", str(tmp_path))
    module, include, version = knf_bulk._knf_paths()
    first = knf_bulk.build(module, include, version)
    assert first.parent == tmp_path and first.exists()

    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled again")
    monkeypatch.setattr(subprocess, "run", no_compiling)
    assert knf_bulk.build(module, include, version) == first
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporaries left


@needs_compiler
def test_a_compile_error_is_reported_with_the_compilers_message(tmp_path, monkeypatch):
    broken = tmp_path / "knf_bulk.cc"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(knf_bulk, "SOURCE", broken)
    monkeypatch.setenv("VGS_CACHE_DIR", str(tmp_path / "cache"))
    module, include, version = knf_bulk._knf_paths()
    with pytest.raises(knf_bulk.BulkUnavailable, match="compiling knf_bulk.cc failed") as err:
        knf_bulk.build(module, include, version)
    assert "error" in str(err.value)
    assert list((tmp_path / "cache").iterdir()) == []


def test_without_the_c_entry_point_features_are_the_same_and_a_warning_says_why(fresh_bulk_state, monkeypatch):
    cfg = cfg_of("logmel40")
    x = speechlike(3000)
    reference = audio.python_binding_frames(cfg, x * np.float32(cfg.waveform_scale))

    def no_compiler():
        raise knf_bulk.BulkUnavailable("no C++ compiler found (set CXX, or install g++)")
    monkeypatch.setattr(knf_bulk, "_compiler", no_compiler)
    with pytest.warns(RuntimeWarning, match=r"not used \(no C\+\+ compiler found.*Python binding"):
        got = audio.compute_features(x, cfg)
    np.testing.assert_array_equal(got, reference)
    assert not audio.releases_gil(cfg)  # so extraction with 2 workers uses processes
    assert knf_bulk.status().startswith("knf Python binding (no C++ compiler")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once is enough
        audio.compute_features(x, cfg)


def test_the_c_entry_point_can_be_turned_off(fresh_bulk_state, monkeypatch):
    monkeypatch.setenv("VGS_KNF_BULK", "0")
    assert "VGS_KNF_BULK=0" in knf_bulk.status()
    with pytest.warns(RuntimeWarning, match="VGS_KNF_BULK=0"):
        assert not audio.releases_gil(cfg_of("fbank80"))


@needs_compiler
def test_a_config_whose_frames_differ_is_not_used(fresh_bulk_state, monkeypatch):
    cfg = cfg_of("fbank80")
    real = knf_bulk.compute_raw

    def off_by_a_little(cfg, samples, expected_frames):
        return real(cfg, samples, expected_frames) + np.float32(1e-3)
    monkeypatch.setattr(knf_bulk, "compute_raw", off_by_a_little)
    with pytest.warns(RuntimeWarning, match="differs from the Python binding's for features.fbank80"):
        assert not knf_bulk.usable_for(cfg)
    x = speechlike(3000)
    np.testing.assert_array_equal(audio.compute_features(x, cfg),
                                  audio.python_binding_frames(cfg, x * np.float32(32768)))


@needs_compiler
def test_an_unwritable_cache_directory_is_named_with_the_fix(tmp_path, monkeypatch):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the cache directory would go")
    monkeypatch.setenv("VGS_CACHE_DIR", str(blocked / "vgs"))
    module, include, version = knf_bulk._knf_paths()
    with pytest.raises(knf_bulk.BulkUnavailable, match=r"cannot build into .*not-a-directory/vgs .*VGS_CACHE_DIR"):
        knf_bulk.build(module, include, version)


# -- the C WAV reader ------------------------------------------------------------------------------
def wav_variants(tmp_path) -> dict:
    """WAV files the C reader must take, and files it must leave to the Python reader."""
    from feature_helpers import fmt_chunk, riff

    pcm = (speechlike(3001) * 32767).astype("<i2")
    short = pcm[:150]  # under one 25 ms frame at 8 kHz
    odd = pcm.tobytes() + b"\x01"
    files = {
        "mono.wav": riff([(b"fmt ", fmt_chunk()), (b"data", pcm.tobytes())]),
        "list-first.wav": riff([(b"fmt ", fmt_chunk()), (b"LIST", b"INFOISFT\x03\0\0\0ab\0"),
                                (b"data", pcm.tobytes())]),
        "fmt-18.wav": riff([(b"fmt ", fmt_chunk() + b"\0\0"), (b"data", pcm[:2000].tobytes())]),
        "full-scale.wav": riff([(b"fmt ", fmt_chunk()), (b"data", np.array([-32768, 32767, 0, 1, -1] * 80,
                                                                           dtype="<i2").tobytes())]),
        "stereo.wav": riff([(b"fmt ", fmt_chunk(channels=2)), (b"data", np.repeat(pcm, 2).tobytes())]),
        "16k.wav": riff([(b"fmt ", fmt_chunk(rate=16000)), (b"data", pcm.tobytes())]),
        "8bit.wav": riff([(b"fmt ", fmt_chunk(bits=8)), (b"data", pcm.tobytes())]),
        "float.wav": riff([(b"fmt ", fmt_chunk(bits=32, tag=3)), (b"data", pcm.tobytes())]),
        "extensible.wav": riff([(b"fmt ", fmt_chunk(tag=0xFFFE)), (b"data", pcm.tobytes())]),
        "cut.wav": riff([(b"fmt ", fmt_chunk()), (b"data", pcm.tobytes())])[:-1000],
        "odd-data.wav": riff([(b"fmt ", fmt_chunk()), (b"data", odd)]),
        "data-first.wav": riff([(b"data", pcm.tobytes()), (b"fmt ", fmt_chunk())]),
        "no-data.wav": riff([(b"fmt ", fmt_chunk())]),
        "short-fmt.wav": riff([(b"fmt ", fmt_chunk()[:14]), (b"data", pcm.tobytes())]),
        "empty-data.wav": riff([(b"fmt ", fmt_chunk()), (b"data", b"")]),
        "short.wav": riff([(b"fmt ", fmt_chunk()), (b"data", short.tobytes())]),
        "sphere.wav": b"NIST_1A\n   1024\nsample_rate -i 8000\nend_head\n".ljust(1024, b" ") + pcm.tobytes(),
        "empty-file.wav": b"",
        "garbage.wav": bytes(range(256)) * 8,
    }
    paths = {}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths[name] = str(tmp_path / name)
    paths["missing.wav"] = str(tmp_path / "missing.wav")
    return paths


@needs_compiler
def test_the_c_reader_takes_exactly_the_files_whose_python_reading_it_reproduces(tmp_path):
    from vgs.corpora.wav import read_pcm16_wav

    cfg = cfg_of("fbank80")
    size, shift = audio.frame_geometry(cfg)
    paths = wav_variants(tmp_path)
    stream, starts, lengths = knf_bulk.read_pcm16_stream(list(paths.values()), 8000, shift, size, 32768.0, 0)
    taken = set()
    for (name, path), start, length in zip(paths.items(), starts, lengths):
        python = read_pcm16_wav(path)
        python_would = python is not None and python[1] == 8000 and python[0].shape[1] == 1 \
            and len(python[0]) >= size
        assert (length >= 0) == python_would, name
        if length >= 0:
            taken.add(name)
            assert start % shift == 0 and length == len(python[0])
            np.testing.assert_array_equal(stream[start:start + length], python[0][:, 0] * np.float32(32768))
    assert taken == {"mono.wav", "list-first.wav", "fmt-18.wav", "full-scale.wav"}


@needs_compiler
def test_the_c_reader_lays_files_end_to_end_with_zeros_between_whatever_the_capacity_guess(tmp_path):
    cfg = cfg_of("fbank80")
    size, shift = audio.frame_geometry(cfg)
    paths = wav_variants(tmp_path)
    names = ["mono.wav", "stereo.wav", "fmt-18.wav", "missing.wav", "full-scale.wav"]
    chosen = [paths[n] for n in names]
    reference = knf_bulk.read_pcm16_stream(chosen, 8000, shift, size, 1.0, 10 ** 6)
    stream, starts, lengths = reference
    assert lengths.tolist()[1] == lengths.tolist()[3] == -1
    ends = [s + -(-n // shift) * shift for s, n in zip(starts, lengths) if n >= 0]
    assert [s for s in starts if s >= 0] == [0] + ends[:-1] and len(stream) == ends[-1]
    for s, n, end in zip([s for s in starts if s >= 0], [n for n in lengths if n >= 0], ends):
        assert not stream[s + n:end].any()
    assert np.abs(stream).max() <= 1.0  # scale 1: samples in [-1, 1)
    for guess in (0, 100, len(stream) - 1, len(stream)):
        again = knf_bulk.read_pcm16_stream(chosen, 8000, shift, size, 1.0, guess)
        for a, b in zip(again, reference):
            np.testing.assert_array_equal(a, b)


@needs_compiler
def test_stores_are_byte_identical_with_and_without_the_c_reader(tmp_path, monkeypatch):
    """A corpus of files the C reader takes and files it leaves (resampled, downmixed, rejected)."""
    from pathlib import Path

    from feature_helpers import store_files
    from vgs.corpora.manifest import Manifest, ManifestRecord, write_manifest
    from vgs.features import extract
    from vgs.features.extract import build_store

    (tmp_path / "wavs").mkdir()
    paths = wav_variants(tmp_path / "wavs")
    names = ["mono.wav", "stereo.wav", "16k.wav", "list-first.wav", "short.wav", "8bit.wav",
             "fmt-18.wav", "missing.wav", "full-scale.wav", "empty-data.wav"] * 4
    records = [ManifestRecord(id=f"u{i}-{n}", source=Path(paths[n]).name, modality="audio", split="train",
                              label=i % 10, speaker="s", num_samples=3001, sample_rate=8000)
               for i, n in enumerate(names)]
    manifest = Manifest("variants", str(tmp_path / "wavs"), records)
    write_manifest(tmp_path / "m.jsonl", manifest)
    cfg = cfg_of("fbank80", downmix=True, resample=True)
    stores = {}
    for c_reader in (True, False):
        monkeypatch.setattr(extract, "reads_files_in_c", lambda cfg, c_reader=c_reader: c_reader)
        out = tmp_path / f"c{c_reader}.zarr"
        summary = build_store(manifest, tmp_path / "m.jsonl", cfg, out, num_workers=2, on_error="skip")
        stores[c_reader] = (summary, store_files(out))
    (summary_c, files_c), (summary_py, files_py) = stores[True], stores[False]
    # short, missing and empty-data are rejected; the rest are taken by one reader or the other
    summary_c.pop("store"), summary_py.pop("store")
    assert summary_c == summary_py and (summary_c["items"], summary_c["rejected"]) == (28, 12)
    assert files_c.keys() == files_py.keys()
    for rel in files_c:
        assert files_c[rel] == files_py[rel], rel
