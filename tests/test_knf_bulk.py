"""The C entry point into kaldi-native-fbank (vgs/features/knf_bulk.cc): the same frames as knf's
Python binding, a cached build, and a fallback with a stated reason when it cannot be used."""
import shutil
import subprocess
import warnings

import numpy as np
import pytest

from test_features import cfg_of, speechlike
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
