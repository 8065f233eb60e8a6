"""Feature extraction: agreement with kaldi-native-fbank, scaling, determinism, worker-count
independence, the batched fast path, the WAV fast path, CMVN and image features."""
import gzip
import struct
from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np
import pytest
import soundfile as sf

from feature_helpers import cfg_of, fmt_chunk, riff, speechlike, store_files
from vgs.corpora.audio_info import read_audio
from vgs.corpora.manifest import Manifest, ManifestRecord, write_manifest
from vgs.corpora.wav import read_pcm16_wav
from vgs.errors import DataError
from vgs.features.audio import compute_features, compute_features_batch, frame_geometry, knf_options
from vgs.features.extract import build_store
from vgs.features.image import image_features
from vgs.store.feature_store import FeatureStore

AUDIO_CONFIGS = ["fbank80", "logmel40", "mfcc40", "logmel96"]


def knf_reference(x: np.ndarray, kind: str, **o) -> np.ndarray:
    """kaldi-native-fbank called directly, options set field by field (not via knf_options)."""
    opts = knf.FbankOptions() if kind == "fbank" else knf.MfccOptions()
    f = opts.frame_opts
    f.samp_freq, f.frame_length_ms, f.frame_shift_ms = o["rate"], o["length"], o["shift"]
    f.dither, f.preemph_coeff, f.remove_dc_offset = 0.0, 0.97, True
    f.window_type, f.round_to_power_of_two, f.snip_edges = o["window"], True, True
    opts.mel_opts.num_bins, opts.mel_opts.low_freq, opts.mel_opts.high_freq = o["bins"], 20.0, 0.0
    opts.use_energy = False
    if kind == "mfcc":
        opts.num_ceps, opts.cepstral_lifter = o["ceps"], 22.0
    ex = knf.OnlineFbank(opts) if kind == "fbank" else knf.OnlineMfcc(opts)
    ex.accept_waveform(o["rate"], (x * 32768).tolist())
    ex.input_finished()
    return np.stack([ex.get_frame(i) for i in range(ex.num_frames_ready)])


@pytest.mark.parametrize("name,kind,options", [
    ("fbank80", "fbank", dict(rate=8000, length=25, shift=10, window="povey", bins=80)),
    ("logmel40", "fbank", dict(rate=8000, length=15, shift=10, window="hamming", bins=40)),
    ("mfcc40", "mfcc", dict(rate=8000, length=25, shift=12.5, window="povey", bins=40, ceps=40)),
    ("logmel96", "fbank", dict(rate=8000, length=93, shift=58, window="hanning", bins=96)),
])
def test_configs_match_kaldi_native_fbank_called_directly(name, kind, options):
    x = speechlike(6000)
    ours = compute_features(x, cfg_of(name))
    ref = knf_reference(x, kind, **options)
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_array_equal(ours, ref)


def test_frame_geometry_matches_knf():
    for name in AUDIO_CONFIGS:
        cfg = cfg_of(name)
        size, shift = frame_geometry(cfg)
        for n in (size, size + 1, size + shift - 1, size + shift, 5 * shift + size + 3):
            assert len(compute_features(speechlike(n), cfg)) == 1 + (n - size) // shift


@pytest.mark.parametrize("name,override", [
    ("fbank80", {}), ("logmel40", {}), ("mfcc40", {}), ("logmel96", {}),
    ("fbank80", {"use_energy": True, "cmvn": "meanvar"}),
    ("fbank80", {"snip_edges": False}),       # not batchable: one extractor per utterance
    ("mfcc40", {"round_to_power_of_two": False, "cmvn": "mean"}),
])
def test_batched_extraction_is_bit_identical_to_one_extractor_per_utterance(name, override):
    cfg = cfg_of(name, **override)
    size, shift = frame_geometry(cfg)
    lengths = [size, size + 1, size + shift - 1, size + shift, 2371, 4000, size + 7 * shift, 977]
    waves = [speechlike(n, seed=i) for i, n in enumerate(lengths)]
    batched = compute_features_batch(waves, cfg, knf_options(cfg))
    for x, got in zip(waves, batched):
        np.testing.assert_array_equal(got, compute_features(x, cfg))


def test_waveform_scale_shifts_log_mel_by_2_ln_32768():
    x = speechlike(4000)
    int16_range = compute_features(x, cfg_of("fbank80"))
    unit_range = compute_features(x, cfg_of("fbank80", waveform_scale=1.0))
    diff = int16_range - unit_range
    np.testing.assert_allclose(diff, 2 * np.log(32768), atol=2e-3)


def test_dither_zero_is_deterministic_and_dither_is_not():
    x = speechlike(4000)
    cfg = cfg_of("fbank80")
    np.testing.assert_array_equal(compute_features(x, cfg), compute_features(x, cfg))
    dithered = cfg_of("fbank80", dither=1.0)
    silence = np.zeros(4000, dtype=np.float32)
    assert not np.array_equal(compute_features(silence, dithered), compute_features(silence, cfg))


def test_cmvn_modes():
    x = speechlike(8000)
    mean = compute_features(x, cfg_of("fbank80", cmvn="mean"))
    np.testing.assert_allclose(mean.mean(axis=0), 0, atol=1e-4)
    meanvar = compute_features(x, cfg_of("fbank80", cmvn="meanvar"))
    np.testing.assert_allclose(meanvar.std(axis=0), 1, atol=1e-3)


# -- the WAV fast path -------------------------------------------------------------------------------
def test_wav_fast_path_agrees_with_soundfile(tmp_path):
    pcm = (speechlike(3001) * 32767).astype("<i2")
    stereo = np.stack([pcm, pcm[::-1]], axis=1).astype("<i2")
    cases = {
        "mono.wav": riff([(b"fmt ", fmt_chunk()), (b"data", pcm.tobytes())]),
        # an odd-sized chunk before the data (padded to even length), as tagging tools write
        "list.wav": riff([(b"fmt ", fmt_chunk()), (b"LIST", b"INFOISFT\x03\0\0\0ab\0"),
                          (b"data", pcm.tobytes())]),
        "stereo.wav": riff([(b"fmt ", fmt_chunk(channels=2, rate=16000)), (b"data", stereo.tobytes())]),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        fast = read_pcm16_wav(tmp_path / name)
        assert fast is not None, name
        ref, rate = sf.read(str(tmp_path / name), dtype="float32", always_2d=True)
        assert fast[1] == rate
        np.testing.assert_array_equal(fast[0], ref)


def test_wav_fast_path_declines_what_it_does_not_understand(tmp_path):
    x = speechlike(2000)
    sf.write(str(tmp_path / "float.wav"), x, 8000, subtype="FLOAT")
    sf.write(str(tmp_path / "pcm24.wav"), x, 8000, subtype="PCM_24")
    sf.write(str(tmp_path / "ok.flac"), x, 8000)
    pcm = (x * 32767).astype("<i2").tobytes()
    (tmp_path / "cut.wav").write_bytes(riff([(b"fmt ", fmt_chunk()), (b"data", pcm)])[:-1000])
    (tmp_path / "nofmt.wav").write_bytes(riff([(b"data", pcm)]))
    for name in ("float.wav", "pcm24.wav", "ok.flac", "cut.wav", "nofmt.wav"):
        assert read_pcm16_wav(tmp_path / name) is None, name
    # read_audio then gives exactly what soundfile gives.
    for name in ("float.wav", "pcm24.wav", "ok.flac", "cut.wav"):
        samples, rate = read_audio(tmp_path / name)
        ref, ref_rate = sf.read(str(tmp_path / name), dtype="float32", always_2d=True)
        np.testing.assert_array_equal(samples, ref)
        assert rate == ref_rate


# -- whole stores ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def audio_corpus(tmp_path_factory):
    """70 short recordings (more than two worker batches) in FSDD's layout, and their manifest."""
    root = tmp_path_factory.mktemp("fsddlike")
    (root / "recordings").mkdir()
    records = []
    rng = np.random.default_rng(5)
    for i in range(70):
        digit, take = i % 10, i // 10
        n = int(rng.integers(1500, 6000))
        name = f"{digit}_spk_{take}.wav"
        sf.write(str(root / "recordings" / name), speechlike(n, seed=i), 8000, subtype="PCM_16")
        records.append(ManifestRecord(id=f"fsdd-{digit}_spk_{take}", source=f"recordings/{name}",
                                      modality="audio", split="test" if take < 2 else "train", label=digit,
                                      transcript=str(digit), speaker="spk", num_samples=n, sample_rate=8000))
    manifest = Manifest("fsddlike", str(root), records)
    write_manifest(root / "manifest.jsonl", manifest)
    return manifest, root / "manifest.jsonl"


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_one_and_two_workers_give_byte_identical_stores(audio_corpus, tmp_path, monkeypatch, pool):
    manifest, mpath = audio_corpus
    cfg = cfg_of("fbank80")
    if pool == "processes":  # what extraction falls back to without knf's C entry point
        monkeypatch.setattr("vgs.features.extract.releases_gil", lambda cfg: False)
    build_store(manifest, mpath, cfg, tmp_path / "w1.zarr", num_workers=1)
    build_store(manifest, mpath, cfg, tmp_path / "w2.zarr", num_workers=2)
    one, two = store_files(tmp_path / "w1.zarr"), store_files(tmp_path / "w2.zarr")
    assert one.keys() == two.keys()
    # Byte for byte, root metadata included: DVC hashes the files, so any difference would
    # re-run every stage downstream of a features stage that ran again on the same input.
    for rel in one:
        assert one[rel] == two[rel], rel
    # A handful of files, whatever the number of utterances (DVC hashes every file).
    assert len(one) < 30
    # The workers' spilled batches are gone once the store is written.
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".w2.zarr")]


def test_store_holds_per_utterance_features_in_manifest_order(audio_corpus, tmp_path):
    manifest, mpath = audio_corpus
    cfg = cfg_of("mfcc40")
    build_store(manifest, mpath, cfg, tmp_path / "s.zarr", num_workers=2)
    store = FeatureStore(tmp_path / "s.zarr")
    assert list(store.ids) == [r.id for r in manifest]
    assert list(store.labels) == [r.label for r in manifest]
    assert store.dim == 40 and store.attrs["config_hash"] == cfg.hash()
    for i in (0, 33, 69):
        samples, _ = read_audio(manifest.resolve(manifest.records[i]))
        np.testing.assert_array_equal(store[i], compute_features(samples[:, 0], cfg))


# -- images ------------------------------------------------------------------------------------------
def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def mnist_like(tmp_path_factory):
    """A 30 + 10 image MNIST in the real IDX .gz layout, with known extreme pixels."""
    from vgs.corpora.mnist import prepare_mnist

    root = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        images = rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8)
        images[:, 0, 0], images[:, 0, 1] = 0, 255
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    manifest = prepare_mnist(root, val_size=5, seed=0)
    write_manifest(root / "manifest.jsonl", manifest)
    return manifest, root / "manifest.jsonl"


def test_image_store_scales_to_unit_range(mnist_like, tmp_path):
    manifest, mpath = mnist_like
    build_store(manifest, mpath, cfg_of("image28"), tmp_path / "i28.zarr")
    store = FeatureStore(tmp_path / "i28.zarr")
    images = store.images()
    assert images.shape == (40, 28, 28) and store.item_shape == (28, 28)
    assert images.min() == 0.0 and images.max() == pytest.approx(1.0)
    assert np.all(images[:, 0, 0] == 0) and np.allclose(images[:, 0, 1], 1.0)
    from vgs.corpora.mnist import load_split

    raw, labels = load_split(manifest.root, "train")
    np.testing.assert_allclose(images[:30], raw / 255.0, atol=1e-6)
    assert list(store.labels[:30]) == labels.tolist()


def test_image_store_resizes_to_32(mnist_like, tmp_path):
    manifest, mpath = mnist_like
    build_store(manifest, mpath, cfg_of("image32"), tmp_path / "i32.zarr")
    store = FeatureStore(tmp_path / "i32.zarr")
    images = store.images()
    assert images.shape == (40, 32, 32) and store.item_shape == (32, 32)
    assert images.min() >= 0.0 and images.max() <= 1.0 + 1e-6
    assert store.item(3).shape == (32, 32)


def test_image_resize_keeps_a_constant_image_constant():
    from vgs.features.config import ImageFeatureConfig

    flat = np.full((2, 28, 28), 200, dtype=np.uint8)
    cfg = ImageFeatureConfig("t", "image", 32, "bilinear", 1 / 255)
    np.testing.assert_allclose(image_features(flat, cfg), 200 / 255, atol=1e-5)
    padded = image_features(flat, ImageFeatureConfig("t", "image", 32, "pad", 1 / 255))
    assert padded.shape == (2, 32, 32) and padded[:, 2:30, 2:30].min() == pytest.approx(200 / 255)
    assert padded[:, :2].max() == 0 and padded[:, 30:].max() == 0


@pytest.mark.parametrize("source", ["train-images-idx3-ubyte.gz#-1", "train-images-idx3-ubyte.gz#x",
                                    "train-images-idx3-ubyte.gz#999"])
def test_bad_packed_image_index_is_a_clear_error(mnist_like, tmp_path, source):
    manifest, mpath = mnist_like
    bad = Manifest(manifest.corpus, manifest.root,
                   [ManifestRecord(id="img-bad", source=source, modality="image", split="train", label=1)])
    with pytest.raises(DataError, match=r"img-bad|index 999"):
        build_store(bad, mpath, cfg_of("image28"), tmp_path / "bad.zarr")
    assert not (tmp_path / "bad.zarr").exists()
