"""Corpus adapters on tiny fixtures built in each corpus's real on-disk layout.

Each fixture writes genuine audio (RIFF WAV through soundfile; NIST SPHERE with a hand-written
1024-byte header for TIDIGITS), runs the adapter, checks ids, labels, splits, speakers and audio
facts, and then runs the real feature extractor over the manifest to prove the audio is readable.
"""
from __future__ import annotations

import gzip
import json
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vgs.corpora.manifest import write_manifest
from vgs.corpora.prepare import prepare_corpus
from vgs.corpora.audio_info import audio_info, read_audio
from vgs.corpora.audiomnist import prepare_audiomnist
from vgs.corpora.fsdd import prepare_fsdd
from vgs.corpora.manifest import read_manifest
from vgs.corpora.mnist import prepare_mnist
from vgs.corpora.speechcommands import prepare_speechcommands
from vgs.corpora.sphere import read_sphere_header
from vgs.corpora.tidigits import prepare_tidigits
from vgs.errors import AudioError, DataError, ParamError
from vgs.features.audio import compute_features, conform_waveform
from vgs.features.config import load_feature_config
from vgs.features.extract import build_store
from vgs.params import Params
from vgs.store.feature_store import FeatureStore


# -- fixture writers ------------------------------------------------------------------------------
def tone(n: int, seed: int) -> np.ndarray:
    """Distinct int16 test signal: a seed-dependent tone plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = 0.3 * np.sin(2 * np.pi * (0.01 + 0.002 * (seed % 7)) * t) + 0.02 * rng.standard_normal(n)
    return np.round(x * 32767).astype(np.int16)


def write_wav(path: Path, n: int, rate: int, seed: int) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = tone(n, seed)
    sf.write(str(path), samples, rate, subtype="PCM_16", format="WAV")
    return samples


def sphere_header(fields: list[tuple[str, str, object]], size: int = 1024) -> bytes:
    lines = ["NIST_1A", f"{size:7d}"]
    for name, kind, value in fields:
        lines.append(f"{name} -s{len(value)} {value}" if kind == "s" else f"{name} -{kind} {value}")
    lines.append("end_head")
    text = ("\n".join(lines) + "\n").encode("ascii")
    assert len(text) <= size
    return text + b" " * (size - len(text))


def write_sphere(path: Path, samples: np.ndarray, rate: int, byte_format: str = "10",
                 coding: str = "pcm") -> None:
    """A NIST SPHERE file as LDC ships TIDIGITS (big-endian "10" by default)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = sphere_header([
        ("database_id", "s", "TIDIGITS"), ("database_version", "s", "1.0"),
        ("utterance_id", "s", f"{path.parent.name}_{path.stem}"),
        ("channel_count", "i", 1), ("sample_count", "i", len(samples)), ("sample_rate", "i", rate),
        ("sample_min", "i", int(samples.min())), ("sample_max", "i", int(samples.max())),
        ("sample_n_bytes", "i", 2), ("sample_byte_format", "s", byte_format), ("sample_sig_bits", "i", 16),
        ("sample_coding", "s", coding)])
    dtype = ">i2" if byte_format == "10" else "<i2"
    body = samples.astype(dtype).tobytes() if coding == "pcm" else b"ajkg\x02" + bytes(range(256)) * 4
    path.write_bytes(header + body)


def fbank_params(name: str, rate: int, bins: int = 23) -> Params:
    return Params({"features": {name: {"kind": "fbank", "sample_rate": rate, "num_mel_bins": bins,
                                       "frame_length_ms": 25, "frame_shift_ms": 10, "dither": 0.0}}})


def extract(manifest, tmp_path: Path, name: str, rate: int) -> FeatureStore:
    """Run the real features stage code over a fixture manifest."""
    manifest_file = tmp_path / f"{manifest.corpus}.jsonl"
    write_manifest(manifest_file, manifest)
    cfg = load_feature_config(fbank_params(name, rate), name)
    out = tmp_path / "features" / f"{manifest.corpus}-{name}.zarr"
    summary = build_store(read_manifest(manifest_file), manifest_file, cfg, out, num_workers=1)
    assert summary["items"] == len(manifest) and summary["rejected"] == 0
    return FeatureStore(out)


# -- TIDIGITS ---------------------------------------------------------------------------------------
TIDIGITS_RATE = 20000
TIDIGITS_SPEAKERS = {  # official split -> group -> speakers
    "train": {"man": ["ae", "af"], "woman": ["ac", "ad"], "boy": ["ab"], "girl": ["ba"]},
    "test": {"man": ["ah"], "woman": ["ai"]},
}
SINGLE = ["1a", "1b", "oa", "zb", "7a"]
MULTI = ["1z9a", "o7b", "33a"]


def build_tidigits(root: Path) -> dict[str, np.ndarray]:
    """The LDC layout; one file in RIFF WAV (as after sph2pipe -f wav), one little-endian SPHERE."""
    written = {}
    seed = 0
    for split, groups in TIDIGITS_SPEAKERS.items():
        for group, speakers in groups.items():
            for spk in speakers:
                for stem in SINGLE + MULTI:
                    seed += 1
                    path = root / split / group / spk / f"{stem}.wav"
                    samples = tone(3000 + 97 * seed, seed)
                    if (split, spk, stem) == ("train", "ae", "7a"):
                        write_wav(path, len(samples), TIDIGITS_RATE, seed)
                    else:
                        write_sphere(path, samples, TIDIGITS_RATE,
                                     byte_format="01" if (spk, stem) == ("af", "1b") else "10")
                    written[f"{split}/{group}/{spk}/{stem}.wav"] = samples
    (root / "train" / "man" / "ae" / "notes.txt").write_text("not audio")
    return written


@pytest.fixture(scope="module")
def tidigits_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tidigits")
    written = build_tidigits(root)
    return root, written


def test_sphere_header_parses_ldc_fields(tidigits_root):
    root, written = tidigits_root
    header = read_sphere_header(root / "test/man/ah/7a.wav")
    assert header.header_size == 1024
    assert header.sample_rate == TIDIGITS_RATE
    assert header.sample_count == len(written["test/man/ah/7a.wav"])
    assert header.sample_byte_format == "10" and header.sample_coding == "pcm"
    assert header.fields["database_id"] == "TIDIGITS" and not header.compressed


def test_libsndfile_reads_pcm_sphere_of_either_byte_order(tidigits_root):
    root, written = tidigits_root
    for rel in ("test/man/ah/7a.wav", "train/man/af/1b.wav"):  # big- and little-endian
        samples, rate = read_audio(root / rel)
        assert rate == TIDIGITS_RATE
        np.testing.assert_array_equal(np.round(samples[:, 0] * 32768).astype(np.int16), written[rel])


def test_tidigits_single_digits_labels_and_speakers(tidigits_root):
    root, _ = tidigits_root
    m = prepare_tidigits(root, val_fraction=0.3, seed=1)
    n_speakers = sum(len(s) for g in TIDIGITS_SPEAKERS.values() for s in g.values())
    assert len(m) == n_speakers * len(SINGLE)
    by_id = {r.id: r for r in m}
    oh = by_id["tidigits-test-man-ah-oa"]
    zero = by_id["tidigits-test-man-ah-zb"]
    seven = by_id["tidigits-test-man-ah-7a"]
    assert (oh.label, oh.transcript) == (0, "oh")
    assert (zero.label, zero.transcript) == (0, "zero")
    assert (seven.label, seven.transcript) == (7, "seven")
    assert seven.source == "test/man/ah/7a.wav" and seven.speaker == "man-ah" and seven.split == "test"
    assert seven.extra == {"group": "man", "take": "a", "official_split": "test"}
    assert not any(stem in r.source for r in m for stem in MULTI)
    assert Counter(r.label for r in m) == {0: 2 * n_speakers, 1: 2 * n_speakers, 7: n_speakers}
    assert {r.speaker for r in m} == {f"{g}-{s}" for gs in TIDIGITS_SPEAKERS.values() for g, ss in gs.items() for s in ss}
    assert "skipped 24 multi-digit utterances and 1 other files" in m.notes[0]


def test_tidigits_audio_facts_come_from_the_header(tidigits_root):
    root, written = tidigits_root
    m = prepare_tidigits(root, val_fraction=0.3, seed=1)
    for r in m:
        assert r.sample_rate == TIDIGITS_RATE
        assert r.num_samples == len(written[r.source]), r.source


def test_tidigits_val_is_speaker_disjoint_stratified_and_seeded(tidigits_root):
    root, _ = tidigits_root
    m = prepare_tidigits(root, val_fraction=0.3, seed=1)
    speakers = {s: {r.speaker for r in m if r.split == s} for s in ("train", "val", "test")}
    assert speakers["test"] == {"man-ah", "woman-ai"}
    assert not speakers["val"] & speakers["train"] and not speakers["val"] & speakers["test"]
    # one of the two men and one of the two women; the single boy and girl stay in train
    assert sorted(s.split("-")[0] for s in speakers["val"]) == ["man", "woman"]
    assert {"boy-ab", "girl-ba"} <= speakers["train"]
    assert all(r.extra["official_split"] == "train" for r in m if r.split == "val")
    again = prepare_tidigits(root, val_fraction=0.3, seed=1)
    assert [r.split for r in again] == [r.split for r in m]
    val_sets = {frozenset(r.speaker for r in prepare_tidigits(root, 0.3, seed).records if r.split == "val")
                for seed in range(8)}
    assert len(val_sets) > 1  # the seed matters


def test_tidigits_val_by_utterance(tidigits_root):
    root, _ = tidigits_root
    m = prepare_tidigits(root, val_fraction=0.25, seed=3, val_by="utterance")
    val = [r for r in m if r.split == "val"]
    train = [r for r in m if r.split == "train"]
    # 6 training speakers: per word, round(0.25 * n) of that word's training takes
    per_word = Counter(r.transcript for r in val)
    assert per_word == {"one": 3, "oh": 2, "zero": 2, "seven": 2}
    assert {r.speaker for r in val} & {r.speaker for r in train}
    with pytest.raises(ParamError, match="val_by"):
        prepare_tidigits(root, val_by="random")


def test_tidigits_cd_layout_and_upper_case(tmp_path):
    base = tmp_path / "LDC93S10" / "data" / "adults" / "TEST" / "MAN" / "AH"
    write_sphere(base / "7A.WAV", tone(2000, 1), TIDIGITS_RATE)
    write_sphere(base / "12A.WAV", tone(2000, 2), TIDIGITS_RATE)
    write_sphere(tmp_path / "LDC93S10" / "data" / "children" / "train" / "girl" / "aa" / "ob.wav",
                 tone(2000, 3), TIDIGITS_RATE)
    m = prepare_tidigits(tmp_path / "LDC93S10", val_fraction=0.0)
    assert sorted((r.id, r.label, r.split) for r in m) == [
        ("tidigits-test-man-ah-7a", 7, "test"), ("tidigits-train-girl-aa-ob", 0, "train")]


def test_tidigits_shorten_gives_the_conversion_fix(tmp_path):
    root = tmp_path / "tidigits"
    write_sphere(root / "test/man/ah/7a.wav", tone(2000, 1), TIDIGITS_RATE)
    shn = root / "test/man/ah/oa.wav"
    write_sphere(shn, tone(2000, 2), TIDIGITS_RATE, coding="pcm,embedded-shorten-v1.1")
    with pytest.raises(DataError) as err:
        prepare_tidigits(root)
    text = str(err.value)
    assert "1 of 2 TIDIGITS files are compressed" in text and str(shn) in text
    assert "sph2pipe -f wav" in text
    # and the feature extractor's reader says the same, instead of libsndfile's "unimplemented format"
    with pytest.raises(AudioError, match="sph2pipe") as err2:
        read_audio(shn)
    assert str(shn) in str(err2.value) and "embedded-shorten" in str(err2.value)
    with pytest.raises(AudioError, match="sph2pipe"):
        audio_info(shn)


def test_tidigits_truncated_sphere_is_named(tmp_path):
    root = tmp_path / "tidigits"
    path = root / "test/man/ah/7a.wav"
    write_sphere(path, tone(2000, 1), TIDIGITS_RATE)
    path.write_bytes(path.read_bytes()[:1024 + 100])
    with pytest.raises(AudioError, match="truncated") as err:
        prepare_tidigits(root)
    assert str(path) in str(err.value)


def test_tidigits_wrong_root_shows_layout(tmp_path):
    with pytest.raises(DataError, match=r"\{train,test\}/\{man,woman,boy,girl\}") as err:
        prepare_tidigits(tmp_path / "nowhere")
    assert "does not exist" in str(err.value)
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="does not look like TIDIGITS") as err:
        prepare_tidigits(tmp_path / "empty")
    assert "<digits><a|b>.wav" in str(err.value)


def test_tidigits_features_read_sphere_exactly(tidigits_root, tmp_path):
    root, written = tidigits_root
    m = prepare_tidigits(root, val_fraction=0.3, seed=1)
    store = extract(m, tmp_path, "fb20k", TIDIGITS_RATE)
    assert len(store) == len(m) and store.attrs["corpus"] == "tidigits"
    assert list(store.ids) == [r.id for r in m]
    assert list(store.splits) == [r.split for r in m]
    cfg = load_feature_config(fbank_params("fb20k", TIDIGITS_RATE), "fb20k")
    # The stored features equal features of the samples we wrote, so both byte orders, the RIFF
    # file and the header offset were read correctly.
    for rel in ("test/man/ah/7a.wav", "train/man/af/1b.wav", "train/man/ae/7a.wav"):
        i = [r.source for r in m].index(rel)
        x = conform_waveform(written[rel].astype(np.float32) / 32768, TIDIGITS_RATE, cfg)
        np.testing.assert_allclose(store[i], compute_features(x, cfg), rtol=1e-5, atol=1e-4)


# -- Google Speech Commands ------------------------------------------------------------------------------
SC_RATE = 16000


@pytest.fixture(scope="module")
def speechcommands_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("speech_commands_v0.02")
    seed = 100
    for word in ("zero", "one", "seven", "yes", "marvin"):
        for spk in ("0a7c2a8d", "bbf3c8b2", "c1d39ce8"):
            for n in range(2):
                seed += 1
                write_wav(root / word / f"{spk}_nohash_{n}.wav", 1600 + 50 * seed % 800, SC_RATE, seed)
    write_wav(root / "_background_noise_" / "white_noise.wav", 4000, SC_RATE, 1)
    (root / "_background_noise_" / "README.md").write_text("noise")
    (root / "seven" / "desktop.ini").write_text("stray")
    (root / "validation_list.txt").write_text(
        "one/bbf3c8b2_nohash_0.wav\none/bbf3c8b2_nohash_1.wav\nyes/bbf3c8b2_nohash_0.wav\n")
    (root / "testing_list.txt").write_text(
        "zero/c1d39ce8_nohash_0.wav\nzero/c1d39ce8_nohash_1.wav\nseven/c1d39ce8_nohash_1.wav\n"
        "marvin/c1d39ce8_nohash_0.wav\n")
    (root / "LICENSE").write_text("CC BY 4.0")
    return root


def test_speechcommands_digit_words_and_official_lists(speechcommands_root):
    m = prepare_speechcommands(speechcommands_root)
    assert len(m) == 3 * 3 * 2  # three digit words, three speakers, two takes
    by_id = {r.id: r for r in m}
    r = by_id["speechcommands-seven-0a7c2a8d_nohash_1"]
    assert (r.label, r.transcript, r.speaker, r.source) == (7, "seven", "0a7c2a8d", "seven/0a7c2a8d_nohash_1.wav")
    assert r.sample_rate == SC_RATE and r.num_samples == sf.info(str(speechcommands_root / r.source)).frames
    splits = {rec.source: rec.split for rec in m}
    assert {s for s, v in splits.items() if v == "val"} == {"one/bbf3c8b2_nohash_0.wav", "one/bbf3c8b2_nohash_1.wav"}
    assert {s for s, v in splits.items() if v == "test"} == {
        "zero/c1d39ce8_nohash_0.wav", "zero/c1d39ce8_nohash_1.wav", "seven/c1d39ce8_nohash_1.wav"}
    assert Counter(splits.values()) == {"train": 13, "val": 2, "test": 3}
    assert {rec.label for rec in m} == {0, 1, 7}
    assert not any(rec.transcript in ("yes", "marvin") for rec in m)
    assert "skipped 14 files in 3 non-digit folders (including _background_noise_)" in m.notes[0]
    assert "1 misnamed files" in m.notes[0]
    assert any("digit folders missing: two, three" in n for n in m.notes)


def test_speechcommands_errors_show_layout(speechcommands_root, tmp_path):
    with pytest.raises(DataError, match="validation_list.txt") as err:
        prepare_speechcommands(tmp_path / "nope")
    assert "<speaker hash>_nohash_<n>.wav" in str(err.value)
    (tmp_path / "sc").mkdir()
    (tmp_path / "sc" / "validation_list.txt").write_text("")
    with pytest.raises(DataError, match="testing_list.txt is missing"):
        prepare_speechcommands(tmp_path / "sc")
    (tmp_path / "sc" / "testing_list.txt").write_text("")
    with pytest.raises(DataError, match="none of the digit word folders"):
        prepare_speechcommands(tmp_path / "sc")


def test_speechcommands_features(speechcommands_root, tmp_path):
    m = prepare_speechcommands(speechcommands_root)
    store = extract(m, tmp_path, "fb16k", SC_RATE)
    assert len(store) == len(m) and list(store.labels) == [r.label for r in m]
    assert all(n >= 8 for n in store.lengths)  # >= 0.1 s at a 10 ms shift


# -- AudioMNIST -------------------------------------------------------------------------------------------
AM_RATE = 48000
AM_META = {
    "01": {"accent": "german", "age": 30, "gender": "male", "native speaker": "no",
           "origin": "Europe, Germany, Wuerzburg", "recordingdate": "17-06-22-11-04-28", "recordingroom": "Kino"},
    "02": {"accent": "German", "age": "25", "gender": "male", "native speaker": "no",
           "origin": "Europe, Germany, Hamburg", "recordingdate": "17-06-26-17-57-29", "recordingroom": "Kino"},
    "03": {"accent": "Danish", "age": "23", "gender": "female", "native speaker": "no",
           "origin": "Europe, Denmark, Copenhagen", "recordingdate": "17-09-11-14-33-03", "recordingroom": "vr-room"},
    "04": {"accent": "Tamil", "age": "1234", "gender": "female", "native speaker": "yes",
           "origin": "Asia, India, Chennai", "recordingdate": "17-10-20-17-24-39", "recordingroom": "vr-room"},
    "05": {"accent": "Chinese", "age": "22", "gender": "female", "native speaker": "no",
           "origin": "Asia, China, Beijing", "recordingdate": "17-08-17-12-20-59", "recordingroom": "library"},
}


@pytest.fixture(scope="module")
def audiomnist_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("AudioMNIST")
    seed = 200
    for spk in ("01", "02", "03", "04", "05", "06"):  # 06 has no metadata entry
        for digit in range(3):
            for rep in range(2):
                seed += 1
                write_wav(root / "data" / spk / f"{digit}_{spk}_{rep}.wav", 2400 + 37 * seed % 900, AM_RATE, seed)
    (root / "data" / "03" / "notes.txt").write_text("3_20 was copied from 3_19")
    (root / "data" / "audioMNIST_meta.txt").write_text(json.dumps(AM_META, indent=4))
    return root


def test_audiomnist_speaker_disjoint_splits_and_metadata(audiomnist_root):
    m = prepare_audiomnist(audiomnist_root, test_speakers=["05"], val_fraction=0.3, seed=0)
    assert len(m) == 6 * 3 * 2
    by_id = {r.id: r for r in m}
    r = by_id["audiomnist-2_03_1"]
    assert (r.label, r.transcript, r.speaker, r.source) == (2, "2", "03", "data/03/2_03_1.wav")
    assert r.sample_rate == AM_RATE and r.num_samples == sf.info(str(audiomnist_root / r.source)).frames
    assert r.extra == {"gender": "female", "age": 23, "accent": "Danish", "native_speaker": False}
    assert by_id["audiomnist-0_04_0"].extra == {"gender": "female", "accent": "Tamil", "native_speaker": True}
    assert by_id["audiomnist-0_06_0"].extra == {}
    speakers = {s: {x.speaker for x in m if x.split == s} for s in ("train", "val", "test")}
    assert speakers["test"] == {"05"}
    assert not speakers["val"] & speakers["train"]
    # gender strata of the five training speakers: male {01,02}, female {03,04}, unknown {06}
    assert len(speakers["val"]) == 2 and len(speakers["val"] & {"01", "02"}) == 1
    assert len(speakers["val"] & {"03", "04"}) == 1
    assert "skipped 1 other files" in m.notes[0]
    assert any("no entry for speaker(s) 06" in n for n in m.notes)
    again = prepare_audiomnist(audiomnist_root, test_speakers=[5], val_fraction=0.3, seed=0)
    assert [x.split for x in again] == [x.split for x in m]


def test_audiomnist_default_test_speakers_and_val_by_utterance(audiomnist_root):
    m = prepare_audiomnist(audiomnist_root, val_fraction=0.5, seed=0, val_by="utterance")
    # of the authors' fold-0 test speakers only 05 is in this copy
    assert {r.speaker for r in m if r.split == "test"} == {"05"}
    assert any("test speakers not in this copy" in n for n in m.notes)
    val = [r for r in m if r.split == "val"]
    assert Counter(r.label for r in val) == {0: 5, 1: 5, 2: 5}  # half of each digit's 10 train takes
    with pytest.raises(DataError, match="none of the test speakers"):
        prepare_audiomnist(audiomnist_root, test_speakers=["42"])
    with pytest.raises(ParamError, match="test_speakers"):
        prepare_audiomnist(audiomnist_root, test_speakers=["x1"])


def test_audiomnist_errors_show_layout(tmp_path):
    with pytest.raises(DataError, match=r"data/<NN>/<digit>_<NN>_<repetition>.wav"):
        prepare_audiomnist(tmp_path / "missing")
    (tmp_path / "am" / "recordings").mkdir(parents=True)
    with pytest.raises(DataError, match="no speaker folders"):
        prepare_audiomnist(tmp_path / "am")
    (tmp_path / "am2" / "data" / "07").mkdir(parents=True)
    (tmp_path / "am2" / "data" / "audioMNIST_meta.txt").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        prepare_audiomnist(tmp_path / "am2")


def test_audiomnist_features_resample_48k(audiomnist_root, tmp_path):
    m = prepare_audiomnist(audiomnist_root, test_speakers=["05"], val_fraction=0.3, seed=0)
    store = extract(m, tmp_path, "fb16k", 16000)
    assert len(store) == len(m)
    # 48 kHz audio resampled to 16 kHz: frame count follows the 16 kHz length
    r = m.records[0]
    expected = 1 + (r.num_samples // 3 - 400) // 160
    assert abs(int(store.lengths[0]) - expected) <= 1


# -- dispatch through params ------------------------------------------------------------------------------
def test_prepare_corpus_dispatches_with_params(tidigits_root, audiomnist_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # data/raw/<corpus> is looked up relative to the working directory
    root, _ = tidigits_root
    params = Params({"seed": 1, "corpora": {
        "tidigits": {"root": str(root), "val_fraction": 0.3, "val_by": "speaker"},
        "audiomnist": {"root": str(audiomnist_root), "test_speakers": ["05"], "val_fraction": 0.3},
        "speechcommands": {"root": None}}})
    assert [r.split for r in prepare_corpus("tidigits", params)] == \
        [r.split for r in prepare_tidigits(root, 0.3, 1)]
    assert {r.speaker for r in prepare_corpus("audiomnist", params) if r.split == "test"} == {"05"}
    with pytest.raises(ParamError, match="ln -s"):
        prepare_corpus("speechcommands", params)
    # a link at data/raw/<corpus> is the default root
    (tmp_path / "data" / "raw").mkdir(parents=True)
    (tmp_path / "data" / "raw" / "tidigits").symlink_to(root)
    linked = prepare_corpus("tidigits", Params({"seed": 1, "corpora": {"tidigits": {"val_fraction": 0.3}}}))
    assert linked.root == "data/raw/tidigits" and len(linked) == len(prepare_tidigits(root))
    bad = Params({"corpora": {"tidigits": {"root": str(root), "val_by": "coin"}}})
    with pytest.raises(ParamError, match="corpora.tidigits.val_by"):
        prepare_corpus("tidigits", bad)


def test_manifest_notes_survive_write_and_read(speechcommands_root, tmp_path):
    m = prepare_speechcommands(speechcommands_root)
    write_manifest(tmp_path / "sc.jsonl", m)
    assert read_manifest(tmp_path / "sc.jsonl").notes == m.notes


# -- MNIST ------------------------------------------------------------------------------------------------
def write_idx(path: Path, array: np.ndarray) -> None:
    magic = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(magic + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    data = {}
    for split, n in (("train", 20), ("t10k", 10)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)
        data[split] = (images, labels)
    return root, data


def test_mnist_records_and_seeded_val(mnist_root):
    root, data = mnist_root
    m = prepare_mnist(root, val_size=5, seed=3)
    assert len(m) == 30
    assert Counter(r.split for r in m) == {"train": 15, "val": 5, "test": 10}
    r = {x.id: x for x in m}["mnist-test-00007"]
    assert (r.source, r.label, r.modality, r.split) == ("t10k-images-idx3-ubyte.gz#7", 7, "image", "test")
    assert [x.split for x in prepare_mnist(root, val_size=5, seed=3)] == [x.split for x in m]
    assert [x.split for x in prepare_mnist(root, val_size=5, seed=4)] != [x.split for x in m]
    assert all(x.label == int(x.id[-5:]) % 10 for x in m)


def test_mnist_features_and_bad_magic(mnist_root, tmp_path):
    root, data = mnist_root
    m = prepare_mnist(root, val_size=5, seed=3)
    manifest_file = tmp_path / "mnist.jsonl"
    write_manifest(manifest_file, m)
    params = Params({"features": {"img": {"kind": "image", "size": None, "scale": 1 / 255}}})
    build_store(m, manifest_file, load_feature_config(params, "img"), tmp_path / "img.zarr")
    store = FeatureStore(tmp_path / "img.zarr")
    assert store.item_shape == (28, 28)
    np.testing.assert_allclose(store.images()[20:], data["t10k"][0] / 255, rtol=1e-6)
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (bad / name).write_bytes((root / name).read_bytes())
    with gzip.open(bad / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"\x00\x00\x0d\x01" + b"\x00" * 24)
    with pytest.raises(DataError, match="bad magic"):
        prepare_mnist(bad)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        prepare_mnist(tmp_path / "nothing-here")


# -- FSDD -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fsdd_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdd")
    seed = 300
    for digit in range(3):
        for speaker in ("jackson", "theo"):
            for index in range(10):
                seed += 1
                write_wav(root / "recordings" / f"{digit}_{speaker}_{index}.wav", 1500 + seed % 500, 8000, seed)
    (root / "recordings" / "README.md").write_text("not a recording")
    return root


def test_fsdd_official_split_and_stratified_seeded_val(fsdd_root):
    m = prepare_fsdd(fsdd_root, val_fraction=0.2, seed=5)
    assert len(m) == 60
    for r in m:
        index = int(r.id.rsplit("_", 1)[1])
        assert (r.split == "test") == (index <= 4), r.id
    r = {x.id: x for x in m}["fsdd-2_theo_7"]
    assert (r.label, r.speaker, r.source, r.sample_rate) == (2, "theo", "recordings/2_theo_7.wav", 8000)
    assert r.num_samples == sf.info(str(fsdd_root / r.source)).frames
    # stratified: one of the five training takes of every speaker-digit is validation
    val = Counter((x.speaker, x.label) for x in m if x.split == "val")
    assert val == {(s, d): 1 for s in ("jackson", "theo") for d in range(3)}
    assert [x.split for x in prepare_fsdd(fsdd_root, 0.2, seed=5)] == [x.split for x in m]
    assert any([x.split for x in prepare_fsdd(fsdd_root, 0.2, seed=s)] != [x.split for x in m] for s in range(6, 10))


def test_fsdd_wrong_root_and_features(fsdd_root, tmp_path):
    with pytest.raises(DataError, match=r"recordings/<digit>_<speaker>_<index>.wav"):
        prepare_fsdd(tmp_path)
    m = prepare_fsdd(fsdd_root, val_fraction=0.2, seed=5)
    store = extract(m, tmp_path, "fb8k", 8000)
    assert list(store.speakers) == [r.speaker for r in m]
