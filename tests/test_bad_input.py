"""Bad input: every case gives a clear error that names the file or the params key, and the fix.

Covers corrupt, empty, stereo and other-rate WAVs, missing files, malformed manifests, unknown
feature configs, invalid parameter values, the on_error policies, a features run that is killed
or fails half-way, and the one-line errors of the stage scripts.
"""
import copy
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from vgs.corpora.audio_info import read_audio
from vgs.corpora.manifest import Manifest, ManifestRecord, read_manifest, write_manifest
from vgs.errors import AudioError, ManifestError, ParamError, StoreError
from vgs.features.audio import compute_features, conform_waveform, frame_geometry
from vgs.features.config import load_feature_config
from vgs.features.extract import build_store
from vgs.params import Params
from vgs.store.feature_store import FeatureStore

REPO = Path(__file__).resolve().parent.parent
RATE = 8000

FBANK = {"kind": "fbank", "sample_rate": RATE, "resample": True, "downmix": True, "frame_length_ms": 25,
         "frame_shift_ms": 10, "window_type": "povey", "num_mel_bins": 40, "low_freq": 20, "high_freq": 0,
         "dither": 0.0}
MFCC = dict(FBANK, kind="mfcc", num_ceps=13)
IMAGE = {"kind": "image", "size": 32, "scale": 1 / 255}


def params_with(features_overrides: dict | None = None, **sections) -> Params:
    features = {"on_error": "raise", "num_workers": 1, "fb": copy.deepcopy(FBANK), "mf": copy.deepcopy(MFCC),
                "img": copy.deepcopy(IMAGE)}
    for name, override in (features_overrides or {}).items():
        features[name] = {**features.get(name, {}), **override}
    return Params({"features": features, **sections})


def tone(seconds: float, rate: int = RATE, channels: int = 1, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))
    if channels > 1:
        x = np.stack([x * (0.5 + 0.5 * c) for c in range(channels)], axis=1)
    return x.astype(np.float32)


def write_wav(path: Path, x: np.ndarray, rate: int = RATE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, rate, subtype="PCM_16")
    return path


def record(rid: str, source: str, label: int = 1, split: str = "train", num_samples: int = 2400,
           rate: int = RATE) -> ManifestRecord:
    return ManifestRecord(id=rid, source=source, modality="audio", split=split, label=label, speaker="s1",
                          num_samples=num_samples, sample_rate=rate, transcript=str(label))


@pytest.fixture
def corpus(tmp_path):
    """A small corpus with good and bad files; returns (root, {name: path})."""
    root = tmp_path / "corpus"
    files = {
        "good1": write_wav(root / "good1.wav", tone(0.30, freq=300)),
        "good2": write_wav(root / "good2.wav", tone(0.50, freq=700, seed=1)),
        "stereo": write_wav(root / "stereo.wav", tone(0.30, channels=2)),
        "rate16k": write_wav(root / "rate16k.wav", tone(0.30, rate=16000), rate=16000),
        "empty": write_wav(root / "empty.wav", np.zeros(0, dtype=np.float32)),
        "short": write_wav(root / "short.wav", tone(0.01)),
    }
    corrupt = root / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(np.random.default_rng(0).integers(0, 256, 500,
                                                                                                  dtype=np.uint8)))
    files["corrupt"] = corrupt
    files["missing"] = root / "missing.wav"
    return root, files


def manifest_of(root: Path, names: list[str], files: dict) -> Manifest:
    return Manifest("tiny", str(root), [record(f"tiny-{n}", files[n].name) for n in names])


# -- audio files -------------------------------------------------------------------------------------
def test_corrupt_wav_names_the_file(corpus):
    _, files = corpus
    with pytest.raises(AudioError) as err:
        read_audio(files["corrupt"])
    assert str(files["corrupt"]) in str(err.value) and "corrupt" in str(err.value)
    assert "on_error: skip" in str(err.value)


def test_empty_wav_names_the_file(corpus):
    _, files = corpus
    with pytest.raises(AudioError, match=r"empty.wav is empty \(0 samples\)"):
        read_audio(files["empty"])


def test_missing_file_names_the_file(corpus):
    _, files = corpus
    with pytest.raises(AudioError, match=r"missing.wav is missing"):
        read_audio(files["missing"])


def test_too_short_for_one_frame_names_the_file(corpus):
    root, files = corpus
    cfg = load_feature_config(params_with(), "fb")
    with pytest.raises(AudioError, match=r"short.wav is too short for one 25.0 ms frame \(80 samples"):
        build_store(manifest_of(root, ["short"], files), __file__, cfg, root.parent / "out.zarr")


def test_stereo_is_downmixed_or_refused(corpus):
    _, files = corpus
    samples, rate = read_audio(files["stereo"])
    assert samples.shape[1] == 2
    mixed = conform_waveform(samples, rate, load_feature_config(params_with(), "fb"), files["stereo"])
    np.testing.assert_allclose(mixed, samples.mean(axis=1), rtol=0, atol=1e-7)
    refuse = load_feature_config(params_with({"fb": {"downmix": False}}), "fb")
    with pytest.raises(AudioError) as err:
        conform_waveform(samples, rate, refuse, files["stereo"])
    assert "stereo.wav has 2 channels" in str(err.value) and "features.fb.downmix: true" in str(err.value)


def test_other_sample_rate_is_resampled_or_refused(corpus):
    _, files = corpus
    samples, rate = read_audio(files["rate16k"])
    assert rate == 16000 and len(samples) == 4800
    cfg = load_feature_config(params_with(), "fb")
    x = conform_waveform(samples, rate, cfg, files["rate16k"])
    assert x.dtype == np.float32 and len(x) == 2400  # 0.3 s at 8 kHz
    # The tone survives resampling (440 Hz is well below the new Nyquist frequency).
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spectrum) * RATE / len(x) - 440) < 5
    size, shift = frame_geometry(cfg)
    assert len(compute_features(x, cfg)) == 1 + (2400 - size) // shift
    refuse = load_feature_config(params_with({"fb": {"resample": False}}), "fb")
    with pytest.raises(AudioError) as err:
        conform_waveform(samples, rate, refuse, files["rate16k"])
    assert "rate16k.wav is 16000 Hz" in str(err.value) and "features.fb.resample: true" in str(err.value)


def test_nan_samples_are_refused():
    cfg = load_feature_config(params_with(), "fb")
    x = tone(0.3)
    x[10] = np.nan
    with pytest.raises(AudioError, match="x.wav contains NaN"):
        conform_waveform(x, RATE, cfg, "x.wav")


# -- manifests ---------------------------------------------------------------------------------------
def good_manifest_lines(n: int = 3) -> list[str]:
    header = json.dumps({"_manifest": 1, "corpus": "tiny", "root": "/r", "num_records": n})
    return [header] + [record(f"r{i}", f"r{i}.wav").to_json() for i in range(n)]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_manifest_round_trip(tmp_path):
    m = read_manifest(write_lines(tmp_path / "m.jsonl", good_manifest_lines()))
    assert [r.id for r in m] == ["r0", "r1", "r2"] and m.records[0].duration == 0.3


def test_manifest_bad_json_names_path_and_line(tmp_path):
    lines = good_manifest_lines()
    lines[2] = lines[2][:-5]  # cut the closing part of record 2
    path = write_lines(tmp_path / "m.jsonl", lines)
    with pytest.raises(ManifestError, match=rf"{path}:3: malformed JSON"):
        read_manifest(path)


def test_manifest_missing_field_names_path_and_line(tmp_path):
    lines = good_manifest_lines()
    d = json.loads(lines[3])
    del d["split"]
    lines[3] = json.dumps(d)
    path = write_lines(tmp_path / "m.jsonl", lines)
    with pytest.raises(ManifestError, match=rf"{path}:4: missing field\(s\) \['split'\]"):
        read_manifest(path)


def test_manifest_bad_split_names_path_line_and_record(tmp_path):
    lines = good_manifest_lines()
    d = json.loads(lines[1])
    d["split"] = "training"
    lines[1] = json.dumps(d)
    path = write_lines(tmp_path / "m.jsonl", lines)
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    assert f"{path}:2: record 'r0': split must be one of" in str(err.value) and "'training'" in str(err.value)


@pytest.mark.parametrize("field,value,expected", [
    ("label", "seven", "label must be an integer"),
    ("sample_rate", 0, "positive integer sample_rate"),
    ("modality", "video", "modality must be one of"),
    ("colour", "red", r"unknown field\(s\) \['colour'\]"),
])
def test_manifest_bad_values(tmp_path, field, value, expected):
    lines = good_manifest_lines()
    d = json.loads(lines[2])
    d[field] = value
    lines[2] = json.dumps(d)
    path = write_lines(tmp_path / "m.jsonl", lines)
    with pytest.raises(ManifestError, match=rf"{path}:3: .*{expected}"):
        read_manifest(path)


def test_truncated_manifest_is_detected_by_the_header_count(tmp_path):
    path = write_lines(tmp_path / "m.jsonl", good_manifest_lines(5)[:4])
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    assert "header says 5 records, found 3 (truncated file?)" in str(err.value)
    assert "prepare stage" in str(err.value)


def test_manifest_without_header_or_missing(tmp_path):
    path = write_lines(tmp_path / "m.jsonl", good_manifest_lines()[1:])
    with pytest.raises(ManifestError, match="missing header line"):
        read_manifest(path)
    with pytest.raises(ManifestError, match="nope.jsonl not found"):
        read_manifest(tmp_path / "nope.jsonl")


def test_manifest_duplicate_ids_are_refused(tmp_path):
    lines = good_manifest_lines()
    lines[2] = lines[1]
    with pytest.raises(ManifestError, match="duplicate ids"):
        read_manifest(write_lines(tmp_path / "m.jsonl", lines))
    m = Manifest("tiny", "/r", [record("a", "a.wav"), record("a", "b.wav")])
    with pytest.raises(ManifestError, match="duplicate id 'a'"):
        write_manifest(tmp_path / "w.jsonl", m)


# -- feature configs ---------------------------------------------------------------------------------
def test_unknown_feature_config_lists_the_known_ones():
    with pytest.raises(ParamError) as err:
        load_feature_config(params_with(), "fbank81")
    assert "unknown feature config 'fbank81'" in str(err.value)
    assert "fb, img, mf" in str(err.value)


@pytest.mark.parametrize("config,override,key,expected", [
    ("fb", {"num_mel_bins": -3}, "features.fb.num_mel_bins", "an integer >= 1, got -3"),
    ("fb", {"num_mel_bins": 40.5}, "features.fb.num_mel_bins", "an integer, got 40.5"),
    ("fb", {"window_type": "foo"}, "features.fb.window_type", "one of povey, hamming"),
    ("fb", {"high_freq": 5000}, "features.fb.high_freq", "Nyquist 4000"),
    ("fb", {"low_freq": 4000}, "features.fb.low_freq", "need low_freq < high_freq"),
    ("fb", {"resample": "yes"}, "features.fb.resample", "true or false, got 'yes'"),
    ("fb", {"snip_edges": "false"}, "features.fb.snip_edges", "true or false, got 'false'"),
    ("fb", {"dither": -1.0}, "features.fb.dither", "a number >= 0.0"),
    ("fb", {"preemph_coeff": 1.5}, "features.fb.preemph_coeff", r"a number in \[0.0, 1.0\]"),
    ("fb", {"cmvn": "global"}, "features.fb.cmvn", "one of none, mean, meanvar"),
    ("fb", {"sample_rate": "8k"}, "features.fb.sample_rate", "an integer, got '8k'"),
    ("fb", {"frame_shift_ms": 0.1}, "features.fb.frame_shift_ms", "less than one sample at 8000 Hz"),
    ("fb", {"num_mel_bins": 200}, "features.fb.num_mel_bins", "num_mel_bins too large"),
    ("fb", {"kind": "spectrogram"}, "features.fb.kind", "one of fbank, mfcc, image"),
    ("mf", {"num_ceps": 41}, "features.mf.num_ceps", "must not exceed num_mel_bins"),
    ("img", {"size": 0}, "features.img.size", "an integer >= 1"),
    ("img", {"resize_method": "nearest"}, "features.img.resize_method", "one of bilinear, pad"),
])
def test_invalid_parameter_values_name_the_dotted_key(config, override, key, expected):
    with pytest.raises(ParamError) as err:
        load_feature_config(params_with({config: override}), config)
    assert key in str(err.value)
    assert re.search(expected, str(err.value)), str(err.value)


def test_missing_required_key_is_named():
    p = params_with()
    del p.data["features"]["fb"]["sample_rate"]
    with pytest.raises(ParamError, match="features.fb.sample_rate is missing"):
        load_feature_config(p, "fb")


def test_every_config_in_the_repo_params_is_valid():
    params = Params.load(REPO / "params.yaml")
    from vgs.features.config import feature_config_names

    names = feature_config_names(params.section("features"))
    assert {"fbank80", "logmel40", "mfcc40", "logmel96", "image28", "image32"} <= set(names)
    for name in names:
        load_feature_config(params, name)


# -- on_error policies and interrupted runs ----------------------------------------------------------
BAD = ["corrupt", "empty", "missing", "short"]


def test_on_error_skip_writes_rejected_jsonl_and_keeps_the_good_items(corpus, tmp_path):
    root, files = corpus
    names = ["good1", "corrupt", "stereo", "empty", "good2", "missing", "rate16k", "short"]
    manifest = manifest_of(root, names, files)
    mpath = tmp_path / "m.jsonl"
    write_manifest(mpath, manifest)
    cfg = load_feature_config(params_with({"fb": {"downmix": True, "resample": True}}), "fb")
    out = tmp_path / "store.zarr"
    summary = build_store(manifest, mpath, cfg, out, num_workers=1, on_error="skip")
    store = FeatureStore(out)
    assert list(store.ids) == ["tiny-good1", "tiny-stereo", "tiny-good2", "tiny-rate16k"]
    assert summary["items"] == 4 and summary["rejected"] == 4 and store.attrs["num_rejected"] == 4
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rejected] == [f"tiny-{n}" for n in BAD]
    reasons = {r["id"]: r["reason"] for r in rejected}
    for name in BAD:
        assert str(files[name]) in reasons[f"tiny-{name}"]
        assert rejected[BAD.index(name)]["source"] == files[name].name
    assert "corrupt" in reasons["tiny-corrupt"] and "empty" in reasons["tiny-empty"]
    assert "missing" in reasons["tiny-missing"] and "too short" in reasons["tiny-short"]


def test_on_error_skip_with_refusing_options(corpus, tmp_path):
    root, files = corpus
    manifest = manifest_of(root, ["good1", "stereo", "rate16k"], files)
    mpath = tmp_path / "m.jsonl"
    write_manifest(mpath, manifest)
    cfg = load_feature_config(params_with({"fb": {"downmix": False, "resample": False}}), "fb")
    build_store(manifest, mpath, cfg, tmp_path / "s.zarr", num_workers=2, on_error="skip")
    assert list(FeatureStore(tmp_path / "s.zarr").ids) == ["tiny-good1"]
    reasons = [json.loads(line)["reason"] for line in (tmp_path / "s.zarr/rejected.jsonl").read_text().splitlines()]
    assert "downmix" in reasons[0] and "resample" in reasons[1]


def test_on_error_skip_of_everything_is_an_error(corpus, tmp_path):
    root, files = corpus
    manifest = manifest_of(root, ["corrupt", "empty"], files)
    write_manifest(tmp_path / "m.jsonl", manifest)
    cfg = load_feature_config(params_with(), "fb")
    with pytest.raises(StoreError, match=r"no usable audio items .* \(2 rejected\)"):
        build_store(manifest, tmp_path / "m.jsonl", cfg, tmp_path / "s.zarr", on_error="skip")
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_on_error_raise_stops_and_leaves_no_store(corpus, tmp_path, workers):
    root, files = corpus
    manifest = manifest_of(root, ["good1", "good2", "corrupt", "stereo"], files)
    write_manifest(tmp_path / "m.jsonl", manifest)
    cfg = load_feature_config(params_with(), "fb")
    out = tmp_path / "features" / "s.zarr"
    with pytest.raises(AudioError, match=str(files["corrupt"])):
        build_store(manifest, tmp_path / "m.jsonl", cfg, out, num_workers=workers, on_error="raise")
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no temporary left either


def test_failure_inside_the_writer_leaves_no_store_and_keeps_an_old_one(corpus, tmp_path, monkeypatch):
    root, files = corpus
    manifest = manifest_of(root, ["good1", "good2", "stereo", "rate16k"], files)
    write_manifest(tmp_path / "m.jsonl", manifest)
    cfg = load_feature_config(params_with(), "fb")
    out = tmp_path / "features" / "s.zarr"
    from vgs.store.feature_store import FeatureStoreWriter

    original_add = FeatureStoreWriter.add
    calls = {"n": 0}

    def failing_add(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full (injected)")
        return original_add(self, *args, **kwargs)

    monkeypatch.setattr(FeatureStoreWriter, "add", failing_add)
    with pytest.raises(OSError, match="injected"):
        build_store(manifest, tmp_path / "m.jsonl", cfg, out, num_workers=1)
    assert not out.exists() and list(out.parent.iterdir()) == []

    monkeypatch.setattr(FeatureStoreWriter, "add", original_add)
    build_store(manifest, tmp_path / "m.jsonl", cfg, out, num_workers=1)
    before = FeatureStore(out).load()
    frames_before = before.group["frames"][:]
    calls["n"] = 0
    monkeypatch.setattr(FeatureStoreWriter, "add", failing_add)
    with pytest.raises(OSError, match="injected"):
        build_store(manifest, tmp_path / "m.jsonl", cfg, out, num_workers=1)
    after = FeatureStore(out)  # the earlier complete store is untouched
    np.testing.assert_array_equal(after.group["frames"][:], frames_before)
    assert [p.name for p in out.parent.iterdir()] == ["s.zarr"]


# -- stage scripts in a scratch repository -----------------------------------------------------------
def stage_env() -> dict:
    env = dict(os.environ)
    env.pop("VGS_TRACEBACK", None)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_stage(project: Path, *args, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "stages" / "features.py"), *args], cwd=project,
                          capture_output=True, text=True, env=stage_env(), timeout=300, **popen)


@pytest.fixture
def project(tmp_path, corpus):
    """A scratch repository: params.yaml with one fbank config and a manifest of the corpus."""
    root, files = corpus
    proj = tmp_path / "proj"
    (proj / "data" / "manifests").mkdir(parents=True)
    params = {"seed": 1, "features": {"on_error": "raise", "num_workers": 2, "fb": dict(FBANK)}}
    (proj / "params.yaml").write_text(yaml.safe_dump(params))
    write_manifest(proj / "data/manifests/tiny.jsonl", manifest_of(root, ["good1", "good2"], files))
    return proj


def set_params(proj: Path, **features):
    p = yaml.safe_load((proj / "params.yaml").read_text())
    for key, value in features.items():
        if isinstance(value, dict):
            p["features"].setdefault(key, {}).update(value)
        else:
            p["features"][key] = value
    (proj / "params.yaml").write_text(yaml.safe_dump(p))


def assert_friendly(result: subprocess.CompletedProcess, *fragments: str):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr  # on a line of its own, after any progress bar
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_stage_script_errors_are_one_friendly_message(project, corpus):
    _, files = corpus
    assert_friendly(run_stage(project, "tiny", "nosuch"), "unknown feature config 'nosuch'", "fix: known configs")
    set_params(project, fb={"num_mel_bins": -3})
    assert_friendly(run_stage(project, "tiny", "fb"), "features.fb.num_mel_bins must be an integer >= 1")
    set_params(project, fb={"num_mel_bins": 40}, on_error="sometimes")
    assert_friendly(run_stage(project, "tiny", "fb"), "features.on_error must be one of raise, skip")
    set_params(project, on_error="raise")
    assert_friendly(run_stage(project, "other", "fb"), "data/manifests/other.jsonl not found",
                    "fix: run the prepare stage")
    lines = (project / "data/manifests/tiny.jsonl").read_text().splitlines()
    (project / "data/manifests/tiny.jsonl").write_text("\n".join(lines[:2]) + "\n{oops\n")
    assert_friendly(run_stage(project, "tiny", "fb"), "data/manifests/tiny.jsonl:3: malformed JSON")


def test_stage_script_bad_audio_then_skip(project, corpus):
    root, files = corpus
    write_manifest(project / "data/manifests/tiny.jsonl", manifest_of(root, ["good1", "corrupt", "good2"], files))
    result = run_stage(project, "tiny", "fb")
    assert_friendly(result, str(files["corrupt"]), "fix:")
    assert not (project / "data/features/tiny/fb.zarr").exists()
    assert list((project / "data/features/tiny").iterdir()) == []
    set_params(project, on_error="skip")
    result = run_stage(project, "tiny", "fb")
    assert result.returncode == 0, result.stderr
    assert "skipped 1 item(s)" in result.stdout and "tiny-corrupt" in result.stdout
    assert "2 items" in result.stdout and "1 rejected" in result.stdout
    assert len(FeatureStore(project / "data/features/tiny/fb.zarr")) == 2


def test_killed_features_run_leaves_nothing_readable_and_a_rerun_cleans_up(project, corpus):
    """kill -9 the stage (and its worker pool) while it writes: no store appears at the output path,
    only a .tmp-* sibling that no stage reads; the next run succeeds and removes it."""
    root, files = corpus
    long_wav = write_wav(root / "long.wav", tone(3.0, freq=500))
    records = [record(f"tiny-{i:04d}", long_wav.name) for i in range(300)]  # 15 minutes of audio
    write_manifest(project / "data/manifests/tiny.jsonl", Manifest("tiny", str(root), records))
    out = project / "data/features/tiny/fb.zarr"
    proc = subprocess.Popen([sys.executable, str(REPO / "stages" / "features.py"), "tiny", "fb"], cwd=project,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=stage_env(),
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if out.parent.exists() and any(p.name.startswith(".fb.zarr.tmp-") for p in out.parent.iterdir()):
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # the stage and its workers, as the OOM killer or a reboot would
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    with pytest.raises(StoreError, match="does not exist"):
        FeatureStore(out)
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".fb.zarr.tmp-")]

    result = run_stage(project, "tiny", "fb")
    assert result.returncode == 0, result.stderr
    assert [p.name for p in out.parent.iterdir()] == ["fb.zarr"]
    store = FeatureStore(out)
    assert len(store) == 300 and store.lengths.min() == store.lengths.max() == 1 + (24000 - 200) // 80


def _with_true_rates(manifest: Manifest) -> Manifest:
    """The manifest as the prepare stage writes it: each record's rate read from its file."""
    return Manifest(manifest.corpus, manifest.root,
                    [dataclasses.replace(r, sample_rate=read_audio(manifest.resolve(r))[1]) for r in manifest])


def test_a_mixed_rate_corpus_says_how_many_files_were_resampled_from_which_rates(corpus, tmp_path, capsys):
    root, files = corpus
    manifest = _with_true_rates(manifest_of(root, ["good1", "rate16k", "good2"], files))
    write_manifest(tmp_path / "m.jsonl", manifest)
    cfg = load_feature_config(params_with(), "fb")
    summary = build_store(manifest, tmp_path / "m.jsonl", cfg, tmp_path / "s.zarr", num_workers=1)
    assert summary["resampled"] == 1
    assert f"resampled 1 of 3 file(s) to {RATE} Hz (features.fb.sample_rate): 1 from 16000 Hz" in capsys.readouterr().out
    assert FeatureStore(tmp_path / "s.zarr").attrs["resampled_from"] == {"16000": 1}


def test_resample_false_refuses_a_mixed_rate_corpus_before_any_work(corpus, tmp_path):
    root, files = corpus
    manifest = _with_true_rates(manifest_of(root, ["good1", "rate16k"], files))
    write_manifest(tmp_path / "m.jsonl", manifest)
    cfg = load_feature_config(params_with({"fb": {"resample": False}}), "fb")
    with pytest.raises(AudioError) as err:
        build_store(manifest, tmp_path / "m.jsonl", cfg, tmp_path / "s.zarr")
    assert "1 file(s) are not at" in err.value.message and str(files["rate16k"]) in err.value.message
    assert "features.fb.resample: true" in err.value.hint
    assert not (tmp_path / "s.zarr").exists()
