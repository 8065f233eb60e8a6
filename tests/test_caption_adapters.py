"""Spoken-caption corpus adapters (Places, Flickr8k, SpokenCOCO) on tiny fixtures in each corpus's
real on-disk layout: real JPEGs (Pillow) and 16-bit WAVs (soundfile, 8 and 16 kHz).

First each adapter on a clean fixture (counts, ids, splits, the multi-language join, several
captions per image, transcripts, speakers, header facts); then every class of bad input, once
with on_error="raise" (the error names the file) and once with "skip" (rejected lists it and a
note counts it); then the round trip through write_caption_corpus and read_manifest.
"""
from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from vgs.corpora.captions import CaptionTooLong, one_caption_per_image, write_caption_corpus
from vgs.corpora.flickr8k import prepare_flickr8k
from vgs.corpora.manifest import read_manifest
from vgs.corpora.places import prepare_places
from vgs.corpora.spokencoco import prepare_spokencoco
from vgs.errors import AudioError, DataError, ParamError

WAV_SEED = iter(range(10**6))


# -- fixture writers ----------------------------------------------------------------------------------
def write_jpeg(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), ((37 * seed) % 256, (91 * seed) % 256, 128)).save(path, "JPEG")


def write_wav(path: Path, rate: int = 16000, n: int | None = None) -> int:
    """A distinct tone of 0.05-0.2 s (at most 20 frames of 10 ms) unless n is given."""
    seed = next(WAV_SEED)
    n = 800 + 80 * (seed % 30) if n is None else n
    n = n * rate // 16000
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.3 * np.sin(2 * np.pi * (0.01 + 0.001 * (seed % 11)) * np.arange(n))
    sf.write(str(path), np.round(x * 32767).astype(np.int16), rate, subtype="PCM_16", format="WAV")
    return n


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1), encoding="utf-8")


@dataclass
class Fixture:
    """A clean corpus plus the handles the bad-input tests break."""

    prepare: Callable
    n_images: int
    n_captions: dict[str, int]
    wav: Path                      # a caption whose image has other captions
    wav_id: str
    image: Path                    # an image and all its captions
    image_id: str
    image_captions: set[str]
    listing: Path                  # the JSON file (or wav2capt.txt) the malformed-file tests break
    listing_captions: set[str]     # captions that only that file lists
    drop_key: Callable[[], str] = None   # removes a required key from one entry; returns what the error names
    info: dict = field(default_factory=dict)


def ids(corpus, view) -> set[str]:
    return {r.id for r in corpus.views[view]}


def rejected_ids(corpus, view=None) -> set[str]:
    return {r["id"] for r in corpus.rejected if view is None or r["view"] == view}


# -- Places ---------------------------------------------------------------------------------------------
PLACES_IMAGES = ["a/abbey/00001.jpg", "a/abbey/00002.jpg", "b/bar/00003.jpg", "c/cafe/00004.jpg"]


def build_places(tmp: Path) -> Fixture:
    base = tmp / "places"
    for i, rel in enumerate(PLACES_IMAGES):
        write_jpeg(base / "images" / rel, i)

    def entries(lang, rows, rate, text_key):
        out = []
        for uttid, speaker, image, text in rows:
            write_wav(base / lang / "wavs" / f"{uttid}.wav", rate)
            e = {"uttid": uttid, "speaker": speaker, "wav": f"wavs/{uttid}.wav", "image": image}
            if text_key:
                e[text_key] = text
            out.append(e)
        return out

    en_train = entries("en", [("EN1", "A1", PLACES_IMAGES[0], "an old abbey"),
                              ("EN2", "A2", PLACES_IMAGES[0], "a stone church with a tower"),
                              ("EN3", "A1", PLACES_IMAGES[1], "ruins of an abbey"),
                              ("EN4", "A3", PLACES_IMAGES[2], "people at a bar")], 16000, "asr_text")
    en_val = entries("en", [("EN5", "A2", PLACES_IMAGES[3], "a small cafe")], 16000, "asr_text")
    hi = entries("hi", [("HI1", "H1", PLACES_IMAGES[0], "एक पुराना मठ"),
                        ("HI3", "H2", PLACES_IMAGES[2], "बार में लोग")], 16000, "text")
    ja = entries("ja", [("JA1", "J1", PLACES_IMAGES[0], None)], 8000, None)
    meta = base / "meta"
    # English: absolute base paths (as released); Hindi and Japanese: relative to the JSON's folder
    absolute = {"image_base_path": str((base / "images").resolve()), "audio_base_path": str((base / "en").resolve())}
    write_json(meta / "en_train.json", {**absolute, "data": en_train})
    write_json(meta / "en_val.json", {**absolute, "data": en_val})
    write_json(meta / "hi_train.json", {"image_base_path": "../images", "audio_base_path": "../hi", "data": hi})
    write_json(meta / "ja_train.json", {"image_base_path": "../images", "audio_base_path": "../ja", "data": ja})
    files = {"en": {"train": meta / "en_train.json", "val": meta / "en_val.json"},
             "hi": {"train": meta / "hi_train.json"}, "ja": {"train": meta / "ja_train.json"}}

    def drop_key():
        doc = json.loads((meta / "en_train.json").read_text())
        del doc["data"][2]["wav"]
        write_json(meta / "en_train.json", doc)
        return "entry 2"

    return Fixture(prepare=partial(prepare_places, files), n_images=4, n_captions={"en": 5, "hi": 2, "ja": 1},
                   wav=base / "en" / "wavs" / "EN2.wav", wav_id="places-en-EN2",
                   image=base / "images" / PLACES_IMAGES[2], image_id=f"places-{PLACES_IMAGES[2]}",
                   image_captions={"places-en-EN4", "places-hi-HI3"}, listing=meta / "en_train.json",
                   listing_captions={f"places-en-EN{i}" for i in range(1, 5)}, drop_key=drop_key,
                   info={"files": files, "base": base})


def test_places_joins_languages_by_image(tmp_path):
    fx = build_places(tmp_path)
    corpus = fx.prepare()
    base = fx.info["base"]
    assert corpus.corpus == "places" and set(corpus.views) == {"image", "en", "hi", "ja"}
    assert ids(corpus, "image") == {f"places-{p}" for p in PLACES_IMAGES}
    assert {r.id: r.split for r in corpus.views["image"]} == {
        "places-a/abbey/00001.jpg": "train", "places-a/abbey/00002.jpg": "train",
        "places-b/bar/00003.jpg": "train", "places-c/cafe/00004.jpg": "val"}
    assert {v: len(m) for v, m in corpus.views.items()} == {"image": 4, "en": 5, "hi": 2, "ja": 1}
    by_id = {r.id: r for v in corpus.views.values() for r in v}
    # the multi-view datapoint: two English captions, one Hindi, one Japanese
    first = "places-a/abbey/00001.jpg"
    assert sorted(r.id for v in ("en", "hi", "ja") for r in corpus.views[v] if r.extra["datapoint"] == first) == [
        "places-en-EN1", "places-en-EN2", "places-hi-HI1", "places-ja-JA1"]
    assert by_id[first].extra == {"datapoint": first} and by_id[first].modality == "image"
    assert by_id["places-en-EN2"].transcript == "a stone church with a tower"   # asr_text
    assert by_id["places-hi-HI1"].transcript == "एक पुराना मठ"                  # text
    assert by_id["places-ja-JA1"].transcript is None                               # neither
    assert by_id["places-ja-JA1"].sample_rate == 8000 and by_id["places-en-EN1"].sample_rate == 16000
    assert by_id["places-en-EN5"].split == "val" and by_id["places-hi-HI3"].split == "train"
    assert by_id["places-en-EN2"].speaker == "A2"
    assert by_id["places-hi-HI3"].extra == {"datapoint": "places-b/bar/00003.jpg", "language": "hi",
                                            "synthetic": False}
    # one root for all views, sources relative to it, headers read
    assert {m.root for m in corpus.views.values()} == {str(base.resolve())}
    for view in corpus.views.values():
        for r in view:
            assert view.resolve(r).is_file() and not Path(r.source).is_absolute()
            if r.modality == "audio":
                assert r.num_samples == sf.info(str(view.resolve(r))).frames
    assert corpus.views["image"].split("val")[0].source == "images/c/cafe/00004.jpg"
    assert corpus.rejected == []
    assert any("1 images have more than one en caption, all kept" in n for n in corpus.notes)


def test_places_languages_required_keeps_trilingual_images_and_lists_the_rest(tmp_path):
    fx = build_places(tmp_path)
    corpus = fx.prepare(languages_required=["en", "hi", "ja"])
    assert ids(corpus, "image") == {"places-a/abbey/00001.jpg"}
    assert {v: len(m) for v, m in corpus.views.items()} == {"image": 1, "en": 2, "hi": 1, "ja": 1}
    assert rejected_ids(corpus, "image") == {f"places-{p}" for p in PLACES_IMAGES[1:]}
    assert rejected_ids(corpus) - rejected_ids(corpus, "image") == {
        "places-en-EN3", "places-en-EN4", "places-en-EN5", "places-hi-HI3"}
    reason = next(r["reason"] for r in corpus.rejected if r["id"] == "places-a/abbey/00002.jpg")
    assert "hi, ja" in reason and "languages_required" in reason
    assert "skipped 3 image record(s) lacking a caption in a language of languages_required" in corpus.notes
    # a bilingual subset
    assert len(fx.prepare(languages_required=["en", "hi"]).views["image"]) == 2


def test_places_empty_optional_fields_read_as_none_but_empty_required_ones_are_bad(tmp_path):
    fx = build_places(tmp_path)
    path = fx.info["files"]["en"]["val"]
    doc = json.loads(path.read_text())
    doc["data"][0].update(asr_text="", speaker="")
    write_json(path, doc)
    r = next(r for r in fx.prepare().views["en"] if r.id == "places-en-EN5")
    assert r.transcript is None and r.speaker is None
    doc["data"][0]["image"] = " "
    write_json(path, doc)
    with pytest.raises(DataError, match="en_val.json: entry 0: key 'image' must be a non-empty str"):
        fx.prepare()


def test_places_configuration_errors(tmp_path):
    fx = build_places(tmp_path)
    files = fx.info["files"]
    with pytest.raises(ParamError, match="languages_required names \\['de'\\]"):
        prepare_places(files, languages_required=["de"])
    with pytest.raises(ParamError, match="'val'"):
        prepare_places({"en": {"dev": files["en"]["val"]}})
    doc = json.loads(files["hi"]["train"].read_text())
    write_json(files["hi"]["train"], {**doc, "audio_base_path": "../nowhere"})
    for on_error in ("raise", "skip"):  # a wrong base path is configuration: it always stops
        with pytest.raises(DataError, match="audio_base_path .*nowhere.*hi_train.json"):
            prepare_places(files, on_error=on_error)
    corpus = prepare_places(files, audio_base_paths={"hi": fx.info["base"] / "hi"})
    assert len(corpus.views["hi"]) == 2


# -- Flickr8k ----------------------------------------------------------------------------------------------
FLICKR_SPLITS = {"train": ["1000_aaa", "1001_bbb", "1006_nocap"], "dev": ["1002_ccc"], "test": ["1003_ddd", "1004_eee"]}
FLICKR_UNLISTED = "1005_fff"


def build_flickr8k(tmp: Path, separate_roots: bool = False, token: bool = True) -> Fixture:
    root = tmp / "flickr8k"
    audio = (tmp / "a" if separate_roots else root) / "flickr_audio"
    images = (tmp / "b" if separate_roots else root) / "Flicker8k_Dataset"
    text = (tmp / "c" if separate_roots else root) / "Flickr8k_text"
    captioned = [i for names in FLICKR_SPLITS.values() for i in names if i != "1006_nocap"] + [FLICKR_UNLISTED]
    capt, spk, tok = [], [], []
    for k, image in enumerate(captioned + ["1006_nocap"]):
        write_jpeg(images / f"{image}.jpg", k)
    for image in captioned:
        for n in range(5):
            write_wav(audio / "wavs" / f"{image}_{n}.wav")
            capt.append(f"{image}_{n}.wav {image}.jpg #{n}")
            spk.append(f"{image}_{n}.wav {(len(spk) % 3) + 1}")
            tok.append(f"{image}.jpg#{n}\tcaption {n} of {image} .")
    (audio / "wav2capt.txt").write_text("\n".join(capt) + "\n")
    (audio / "wav2spk.txt").write_text("\n".join(spk) + "\n")
    text.mkdir(parents=True, exist_ok=True)
    for split, names in FLICKR_SPLITS.items():
        (text / f"Flickr_8k.{split}Images.txt").write_text("".join(f"{i}.jpg\n" for i in names))
    if token:
        (text / "Flickr8k.token.txt").write_text("\n".join(tok) + "\n")
    prepare = (partial(prepare_flickr8k, audio_root=audio, image_root=images, text_root=text) if separate_roots
               else partial(prepare_flickr8k, root))
    return Fixture(prepare=prepare, n_images=5, n_captions={"en": 25}, wav=audio / "wavs" / "1000_aaa_1.wav",
                   wav_id="flickr8k-1000_aaa_1", image=images / "1001_bbb.jpg", image_id="flickr8k-1001_bbb",
                   image_captions={f"flickr8k-1001_bbb_{n}" for n in range(5)}, listing=audio / "wav2capt.txt",
                   listing_captions=set(), info={"root": root, "audio": audio})


def test_flickr8k_five_captions_per_image_and_official_splits(tmp_path):
    fx = build_flickr8k(tmp_path)
    corpus = fx.prepare()
    assert set(corpus.views) == {"image", "en"}
    assert {r.id: r.split for r in corpus.views["image"]} == {
        "flickr8k-1000_aaa": "train", "flickr8k-1001_bbb": "train", "flickr8k-1002_ccc": "val",
        "flickr8k-1003_ddd": "test", "flickr8k-1004_eee": "test"}
    en = corpus.views["en"]
    assert len(en) == 25 and Counter(r.extra["datapoint"] for r in en) == Counter(
        {f"flickr8k-{i}": 5 for i in ("1000_aaa", "1001_bbb", "1002_ccc", "1003_ddd", "1004_eee")})
    r = next(r for r in en if r.id == "flickr8k-1003_ddd_2")
    assert (r.split, r.transcript, r.source) == ("test", "caption 2 of 1003_ddd .", "flickr_audio/wavs/1003_ddd_2.wav")
    assert r.speaker in {"1", "2", "3"} and r.sample_rate == 16000 and r.num_samples > 0
    assert corpus.views["image"].split("val")[0].source == "Flicker8k_Dataset/1002_ccc.jpg"
    assert corpus.root == str(fx.info["root"])
    # the image in no split list, with its five captions, and the listed image without captions
    assert rejected_ids(corpus, "image") == {"flickr8k-1005_fff", "flickr8k-1006_nocap"}
    assert rejected_ids(corpus, "en") == {f"flickr8k-1005_fff_{n}" for n in range(5)}
    assert "skipped 1 image record(s) whose image is in no split list" in corpus.notes
    assert "skipped 1 image record(s) left without any usable caption" in corpus.notes


def test_flickr8k_separate_roots_without_token_file(tmp_path):
    fx = build_flickr8k(tmp_path, separate_roots=True, token=False)
    corpus = fx.prepare()
    assert len(corpus.views["image"]) == 5 and len(corpus.views["en"]) == 25
    assert corpus.root == str(tmp_path)
    assert {r.transcript for r in corpus.views["en"]} == {None}
    assert corpus.views["en"].split("test")[0].source.startswith("a/flickr_audio/wavs/")
    assert any(n.startswith("transcripts unknown") for n in corpus.notes)
    with pytest.raises(DataError, match="needs root"):
        prepare_flickr8k(audio_root=tmp_path / "a" / "flickr_audio")


def test_flickr8k_accepts_the_corrected_folder_spelling(tmp_path):
    fx = build_flickr8k(tmp_path)
    root = fx.info["root"]
    (root / "Flicker8k_Dataset").rename(root / "Flickr8k_Dataset")
    corpus = fx.prepare()
    assert corpus.views["image"].records[0].source.startswith("Flickr8k_Dataset/")
    (root / "Flickr8k_Dataset").rename(root / "Images")
    with pytest.raises(DataError, match="Flicker8k_Dataset"):
        fx.prepare()


def test_one_caption_per_test_image_is_seeded(tmp_path):
    corpus = build_flickr8k(tmp_path).prepare()
    picks = one_caption_per_image(corpus, "en", seed=3)
    assert [r.extra["datapoint"] for r in picks] == ["flickr8k-1003_ddd", "flickr8k-1004_eee"]
    assert all(r.split == "test" for r in picks)
    assert [r.id for r in picks] == [r.id for r in one_caption_per_image(corpus, "en", seed=3)]
    assert len({tuple(r.id for r in one_caption_per_image(corpus, "en", seed=s)) for s in range(20)}) > 5
    assert len(one_caption_per_image(corpus, "en", seed=0, split="train")) == 2
    with pytest.raises(ParamError):
        one_caption_per_image(corpus, "image", seed=0)


# -- SpokenCOCO --------------------------------------------------------------------------------------------------
COCO_IMAGES = {  # image -> Karpathy split
    "train2014/COCO_train2014_000000000009.jpg": "train", "train2014/COCO_train2014_000000000025.jpg": "train",
    "val2014/COCO_val2014_000000000042.jpg": "restval", "val2014/COCO_val2014_000000000073.jpg": "val",
    "val2014/COCO_val2014_000000000074.jpg": "test", "val2014/COCO_val2014_000000000075.jpg": "test"}


def build_spokencoco(tmp: Path) -> Fixture:
    coco = tmp / "coco"
    root = coco / "SpokenCOCO"
    releases = {"train": [], "val": []}
    for k, (image, _) in enumerate(COCO_IMAGES.items()):
        write_jpeg(coco / image, k)
        release = "train" if image.startswith("train2014") else "val"
        caps = []
        for n in range(3 if k == 3 else 2):
            uttid = f"spk{n}-X{k}_{Path(image).stem[-2:]}_{n}"
            wav = f"wavs/{release}/0/{uttid}.wav"
            write_wav(root / wav)
            caps.append({"text": f"A PICTURE {k} NUMBER {n}", "speaker": f"spk{n}", "uttid": uttid, "wav": wav})
        releases[release].append({"image": image, "captions": caps})
    write_json(root / "SpokenCOCO_train.json", {"data": releases["train"]})
    write_json(root / "SpokenCOCO_val.json", {"data": releases["val"]})
    write_json(coco / "dataset_coco.json", {"images": [
        {"filepath": image.split("/")[0], "filename": image.split("/")[1], "split": split, "cocoid": i,
         "sentences": [{"raw": "a picture"}]} for i, (image, split) in enumerate(COCO_IMAGES.items())],
        "dataset": "coco"})
    image74 = releases["val"][2]

    def drop_key():
        doc = json.loads((root / "SpokenCOCO_val.json").read_text())
        del doc["data"][1]["captions"][0]["wav"]
        write_json(root / "SpokenCOCO_val.json", doc)
        return "entry 1, caption 0"

    val_captions = {f"spokencoco-{c['uttid']}" for e in releases["val"] for c in e["captions"]}
    return Fixture(prepare=partial(prepare_spokencoco, root), n_images=6, n_captions={"en": 13},
                   wav=root / releases["train"][0]["captions"][1]["wav"],
                   wav_id=f"spokencoco-{releases['train'][0]['captions'][1]['uttid']}",
                   image=coco / image74["image"], image_id="spokencoco-COCO_val2014_000000000074",
                   image_captions={f"spokencoco-{c['uttid']}" for c in image74["captions"]},
                   listing=root / "SpokenCOCO_val.json", listing_captions=val_captions, drop_key=drop_key,
                   info={"coco": coco, "root": root})


def test_spokencoco_karpathy_split(tmp_path):
    fx = build_spokencoco(tmp_path)
    corpus = fx.prepare()
    splits = {r.id: r.split for r in corpus.views["image"]}
    assert splits == {"spokencoco-COCO_train2014_000000000009": "train",
                      "spokencoco-COCO_train2014_000000000025": "train",
                      "spokencoco-COCO_val2014_000000000042": "train",   # restval
                      "spokencoco-COCO_val2014_000000000073": "val",
                      "spokencoco-COCO_val2014_000000000074": "test",
                      "spokencoco-COCO_val2014_000000000075": "test"}
    en = corpus.views["en"]
    assert len(en) == 13 and Counter(r.split for r in en) == Counter({"train": 6, "val": 3, "test": 4})
    r = next(r for r in en if r.extra["datapoint"] == "spokencoco-COCO_val2014_000000000073" and r.speaker == "spk2")
    assert r.transcript == "A PICTURE 3 NUMBER 2" and r.id == "spokencoco-spk2-X3_73_2"
    assert r.source == "SpokenCOCO/wavs/val/0/spk2-X3_73_2.wav"
    assert corpus.root == str(fx.info["coco"])
    assert corpus.views["image"].split("test")[0].source == "val2014/COCO_val2014_000000000074.jpg"
    assert any("Karpathy split" in n for n in corpus.notes)


def test_spokencoco_release_splits_and_missing_karpathy_file(tmp_path):
    fx = build_spokencoco(tmp_path)
    (fx.info["coco"] / "dataset_coco.json").rename(tmp_path / "karpathy.json")
    with pytest.raises(DataError, match="Karpathy split file not found") as err:
        fx.prepare()
    assert "dataset_coco.json" in str(err.value) and "coco2014" in str(err.value)
    corpus = fx.prepare(karpathy_split=tmp_path / "karpathy.json")
    assert Counter(r.split for r in corpus.views["image"]) == Counter({"train": 3, "val": 1, "test": 2})
    corpus = fx.prepare(split_scheme="coco2014")
    assert Counter(r.split for r in corpus.views["image"]) == Counter({"train": 2, "val": 4})
    corpus = fx.prepare(karpathy_split=tmp_path / "karpathy.json", restval="skip")
    assert Counter(r.split for r in corpus.views["image"]) == Counter({"train": 2, "val": 1, "test": 2})
    assert rejected_ids(corpus, "image") == {"spokencoco-COCO_val2014_000000000042"}
    assert "restval" in corpus.rejected[0]["reason"] and len(rejected_ids(corpus, "en")) == 2


def test_spokencoco_image_missing_from_karpathy_file_is_listed(tmp_path):
    fx = build_spokencoco(tmp_path)
    path = fx.info["coco"] / "dataset_coco.json"
    doc = json.loads(path.read_text())
    doc["images"] = [i for i in doc["images"] if not i["filename"].endswith("75.jpg")]
    write_json(path, doc)
    corpus = fx.prepare()
    assert len(corpus.views["image"]) == 5 and len(corpus.views["en"]) == 11
    assert "spokencoco-COCO_val2014_000000000075" in rejected_ids(corpus, "image")
    assert len(rejected_ids(corpus, "en")) == 2


# -- bad input, every adapter ---------------------------------------------------------------------------------------
BUILDERS = {"places": build_places, "flickr8k": build_flickr8k, "spokencoco": build_spokencoco}
# what the fixtures reject on their own, clean (Flickr8k: the unlisted image and the one without captions)
CLEAN_REJECTS = {"places": 0, "flickr8k": 7, "spokencoco": 0}


def damage(path: Path, how: str) -> str:
    """Break a file; returns a phrase the error must contain."""
    if how == "missing":
        path.unlink()
        return "missing"
    if how == "zero_bytes":
        path.write_bytes(b"")
        return "0 bytes"
    if how == "zero_samples":
        sf.write(str(path), np.zeros(0, np.int16), 16000, subtype="PCM_16")
        return "0 samples"
    if how == "bad_body":  # a PNG whose header parses but whose data chunk fails its checksum
        buf = io.BytesIO()
        Image.new("RGB", (8, 6), (1, 2, 3)).save(buf, "PNG")
        data = bytearray(buf.getvalue())
        data[data.index(b"IDAT") + 6] ^= 0xFF
        path.write_bytes(bytes(data))
        with Image.open(path) as im:  # the header alone looks fine: only verify() finds it
            assert im.size == (8, 6)
        return "not a readable image"
    path.write_bytes(b"this is not a media file at all" * 4)
    return "corrupt" if path.suffix == ".wav" else "not a readable image"


@pytest.mark.parametrize("adapter", BUILDERS)
@pytest.mark.parametrize("how", ["missing", "garbage", "zero_bytes", "zero_samples"])
def test_bad_wav(tmp_path, adapter, how):
    fx = BUILDERS[adapter](tmp_path)
    phrase = damage(fx.wav, how)
    with pytest.raises(AudioError, match=phrase) as err:
        fx.prepare()
    assert str(fx.wav) in err.value.message and "on_error: skip" in str(err.value)
    corpus = fx.prepare(on_error="skip")
    bad = [r for r in corpus.rejected if r["id"] == fx.wav_id]
    assert len(bad) == 1 and bad[0]["view"] == "en" and bad[0]["path"] == str(fx.wav) and phrase in bad[0]["reason"]
    assert len(corpus.rejected) == CLEAN_REJECTS[adapter] + 1
    assert fx.wav_id not in ids(corpus, "en") and len(corpus.views["en"]) == fx.n_captions["en"] - 1
    assert len(corpus.views["image"]) == fx.n_images  # its image keeps its other captions
    assert any(n.startswith("skipped 1 en record(s) whose WAV is missing, empty") for n in corpus.notes)
    assert any("rejected.jsonl" in n for n in corpus.notes)


@pytest.mark.parametrize("adapter", BUILDERS)
@pytest.mark.parametrize("how", ["missing", "garbage", "zero_bytes", "bad_body"])
def test_bad_image_takes_its_captions_along(tmp_path, adapter, how):
    fx = BUILDERS[adapter](tmp_path)
    phrase = damage(fx.image, how)
    with pytest.raises(DataError, match=phrase) as err:
        fx.prepare()
    assert str(fx.image) in err.value.message
    corpus = fx.prepare(on_error="skip")
    assert fx.image_id not in ids(corpus, "image") and len(corpus.views["image"]) == fx.n_images - 1
    caption_ids = set().union(*(ids(corpus, v) for v in corpus.languages))
    assert not caption_ids & fx.image_captions
    assert sum(len(corpus.views[v]) for v in corpus.languages) == sum(fx.n_captions.values()) - len(fx.image_captions)
    listed = {r["id"]: r for r in corpus.rejected}
    assert listed[fx.image_id]["path"] == str(fx.image) and phrase in listed[fx.image_id]["reason"]
    assert all(fx.image_id in listed[c]["reason"] for c in fx.image_captions)
    assert len(corpus.rejected) == CLEAN_REJECTS[adapter] + 1 + len(fx.image_captions)
    assert "skipped 1 image record(s) whose image is missing, empty or unreadable" in corpus.notes


@pytest.mark.parametrize("adapter", BUILDERS)
def test_caption_longer_than_max_frames(tmp_path, adapter):
    fx = BUILDERS[adapter](tmp_path)
    write_wav(fx.wav, n=16000)  # 1 s = 100 frames of 10 ms; every other caption has at most 20
    assert len(fx.prepare(max_frames=100).views["en"]) == fx.n_captions["en"]  # 100 is not more than 100
    assert len(fx.prepare(max_frames=50, frame_shift_ms=20).views["en"]) == fx.n_captions["en"]
    with pytest.raises(CaptionTooLong, match="100 frames at 10 ms, more than max_frames=99") as err:
        fx.prepare(max_frames=99)
    assert isinstance(err.value, AudioError) and str(fx.wav) in err.value.message
    corpus = fx.prepare(max_frames=99, on_error="skip")
    assert fx.wav_id in rejected_ids(corpus, "en") and len(corpus.rejected) == CLEAN_REJECTS[adapter] + 1
    assert len(corpus.views["en"]) == fx.n_captions["en"] - 1
    assert "skipped 1 en record(s) longer than max_frames" in corpus.notes
    with pytest.raises(ParamError):
        fx.prepare(max_frames=0)


@pytest.mark.parametrize("adapter", BUILDERS)
def test_malformed_listing_file(tmp_path, adapter):
    fx = BUILDERS[adapter](tmp_path)
    if fx.listing.suffix == ".json":
        text = fx.listing.read_text()
        fx.listing.write_text(text[:text.index('"captions"' if adapter == "spokencoco" else '"data"') + 12] + "}{")
        with pytest.raises(DataError, match=r"malformed JSON at line \d+, column \d+") as err:
            fx.prepare()
        reason, kind = "malformed JSON", "in a malformed or mis-structured JSON or list file"
    else:  # Flickr8k's wav2capt.txt: line 4 loses its caption number
        lines = fx.listing.read_text().splitlines()
        lines[3] = lines[3].rsplit(" ", 1)[0]
        fx.listing.write_text("\n".join(lines) + "\n")
        with pytest.raises(DataError, match="wav2capt.txt:4: expected '<wav> <image>.jpg #<n>'") as err:
            fx.prepare()
        reason, kind = "wav2capt.txt:4", "from an entry with a missing key or a wrong value"
    assert str(fx.listing) in err.value.message
    corpus = fx.prepare(on_error="skip")
    bad = [r for r in corpus.rejected if r["path"] == str(fx.listing)]
    assert len(bad) == 1 and reason in bad[0]["reason"]
    assert not ids(corpus, "en") & fx.listing_captions
    expected_en = fx.n_captions["en"] - (len(fx.listing_captions) if fx.listing_captions else 1)
    assert len(corpus.views["en"]) == expected_en
    assert f"skipped 1 en record(s) {kind}" in corpus.notes


@pytest.mark.parametrize("adapter", ["places", "spokencoco"])
def test_entry_with_missing_key(tmp_path, adapter):
    fx = BUILDERS[adapter](tmp_path)
    where = fx.drop_key()
    with pytest.raises(DataError) as err:
        fx.prepare()
    assert err.value.message == f"{fx.listing}: {where}: missing key 'wav'"
    corpus = fx.prepare(on_error="skip")
    bad = [r for r in corpus.rejected if r["path"] == str(fx.listing)]
    assert len(bad) == 1 and bad[0]["reason"] == err.value.message
    assert "skipped 1 en record(s) from an entry with a missing key or a wrong value" in corpus.notes
    # Places loses that one caption (its image had no other); SpokenCOCO loses the whole entry
    assert len(corpus.views["image"]) == fx.n_images - 1
    assert len(corpus.views["en"]) == fx.n_captions["en"] - (1 if adapter == "places" else 3)


def test_wrong_top_level_structure_names_file_and_key(tmp_path):
    fx = build_spokencoco(tmp_path)
    write_json(fx.listing, {"images": []})
    with pytest.raises(DataError, match="SpokenCOCO_val.json: missing key 'data'"):
        fx.prepare()
    corpus = fx.prepare(on_error="skip")
    assert len(corpus.views["image"]) == 2 and "missing key 'data'" in corpus.rejected[0]["reason"]

    fx = build_places(tmp_path / "p")
    hi = fx.info["files"]["hi"]["train"]
    doc = json.loads(hi.read_text())
    write_json(hi, [doc])
    with pytest.raises(DataError, match="hi_train.json: expected a JSON object, got list"):
        fx.prepare()
    write_json(hi, {k: v for k, v in doc.items() if k != "image_base_path"})
    with pytest.raises(DataError, match="hi_train.json: missing key 'image_base_path'"):
        fx.prepare()
    corpus = fx.prepare(on_error="skip")
    assert len(corpus.views["hi"]) == 0 and len(corpus.views["en"]) == 5
    assert [r["path"] for r in corpus.rejected] == [str(hi)]
    assert corpus.views["hi"].records == [] and corpus.views["hi"].root == corpus.root
    overridden = fx.prepare(image_base_path=fx.info["base"] / "images")
    assert overridden.views["hi"].records[0].transcript == "एक पुराना मठ"


def test_duplicate_caption_id(tmp_path):
    fx = build_places(tmp_path)
    path = fx.info["files"]["en"]["val"]
    doc = json.loads(path.read_text())
    doc["data"].append(dict(doc["data"][0]))
    write_json(path, doc)
    with pytest.raises(DataError, match="caption id 'places-en-EN5' .* was seen before"):
        fx.prepare()
    corpus = fx.prepare(on_error="skip")
    assert len(corpus.views["en"]) == 5 and rejected_ids(corpus) == {"places-en-EN5"}


def test_image_in_two_splits(tmp_path):
    fx = build_places(tmp_path)
    path = fx.info["files"]["hi"]["train"]
    files = {**fx.info["files"], "hi": {"val": path}}  # Hindi captions of training images, called val
    with pytest.raises(DataError, match="is in split 'train' .* and in split 'val'"):
        prepare_places(files)
    corpus = prepare_places(files, on_error="skip")
    assert len(corpus.views["hi"]) == 0 and rejected_ids(corpus, "hi") == {"places-hi-HI1", "places-hi-HI3"}
    with pytest.raises(ParamError, match="on_error"):
        prepare_places(files, on_error="ignore")


# -- output ----------------------------------------------------------------------------------------------------------
def test_write_caption_corpus_round_trip(tmp_path):
    fx = build_places(tmp_path)
    damage(fx.wav, "garbage")
    corpus = fx.prepare(on_error="skip")
    out = tmp_path / "manifests"
    written = write_caption_corpus(corpus, out / "places")
    assert sorted(p.name for p in written) == ["en.jsonl", "hi.jsonl", "image.jsonl", "ja.jsonl", "rejected.jsonl"]
    assert sorted(p.name for p in (out / "places").iterdir()) == sorted(p.name for p in written)
    for view, manifest in corpus.views.items():
        back = read_manifest(out / "places" / f"{view}.jsonl")
        assert back.records == manifest.records and back.root == manifest.root and back.notes == manifest.notes
    assert [json.loads(line) for line in (out / "places" / "rejected.jsonl").read_text().splitlines()] == corpus.rejected
    assert len(corpus.rejected) == 1 and not list(out.glob(".*tmp-*"))

    clean = build_spokencoco(tmp_path / "coco").prepare()
    write_caption_corpus(clean, out / "spokencoco")
    assert (out / "spokencoco" / "rejected.jsonl").read_text() == ""
    assert len(read_manifest(out / "spokencoco" / "en.jsonl")) == 13


# -- every adapter option from params.yaml (vgs/corpora/prepare_captions.py) -----------------------------
def caption_params(name: str, entry: dict):
    from vgs.params import Params
    return Params({"caption_corpora": {name: entry}}, "", "params.yaml")


def test_places_base_paths_from_params_replace_the_released_absolute_ones(tmp_path):
    from vgs.corpora.prepare_captions import prepare_caption_corpus
    fx = build_places(tmp_path)
    base = fx.info["base"]
    # As released: the JSONs carry base paths from the original machine, which do not exist here.
    for path in (base / "meta" / "en_train.json", base / "meta" / "en_val.json"):
        doc = json.loads(path.read_text())
        doc.update(image_base_path="/data/sls/scratch/places/images", audio_base_path="/data/sls/placesaudio/en")
        write_json(path, doc)
    files = {lang: {split: str(p) for split, p in splits.items()} for lang, splits in fx.info["files"].items()}
    entry = {"adapter": "places", "json_files": files}
    with pytest.raises(DataError, match="/data/sls/scratch/places/images"):
        prepare_caption_corpus("places", caption_params("places", entry))
    entry.update(image_base_path=str(base / "images"), audio_base_paths={"en": str(base / "en")})
    corpus = prepare_caption_corpus("places", caption_params("places", entry))
    assert ids(corpus, "en") == {f"places-en-EN{i}" for i in range(1, 6)} and len(corpus.views["image"]) == 4


def test_an_unknown_or_misspelt_option_is_an_error_naming_the_known_ones(tmp_path):
    from vgs.corpora.prepare_captions import prepare_caption_corpus
    fx = build_places(tmp_path)
    files = {lang: {split: str(p) for split, p in splits.items()} for lang, splits in fx.info["files"].items()}
    with pytest.raises(ParamError, match=r"caption_corpora.places.image_base is not an option of the places") as err:
        prepare_caption_corpus("places", caption_params("places", {"adapter": "places", "json_files": files,
                                                                   "image_base": "/x"}))
    assert "image_base_path" in str(err.value) and "audio_base_paths" in str(err.value)
    with pytest.raises(ParamError, match="audio_base_paths names language"):
        prepare_caption_corpus("places", caption_params("places", {"adapter": "places", "json_files": files,
                                                                   "audio_base_paths": {"fr": "/x"}}))
    with pytest.raises(ParamError, match="restval"):
        prepare_caption_corpus("coco", caption_params("coco", {"adapter": "spokencoco", "root": "/x",
                                                               "restval": "maybe"}))
    with pytest.raises(ParamError, match="split_scheme is not an option of the flickr8k"):
        prepare_caption_corpus("f", caption_params("f", {"adapter": "flickr8k", "root": "/x",
                                                         "split_scheme": "karpathy"}))


def test_spokencoco_split_options_from_params(tmp_path):
    from vgs.corpora.prepare_captions import prepare_caption_corpus
    fx = build_spokencoco(tmp_path)
    (fx.info["coco"] / "dataset_coco.json").rename(tmp_path / "karpathy.json")
    entry = {"adapter": "spokencoco", "root": str(fx.info["root"])}
    with pytest.raises(DataError, match="Karpathy split file not found") as err:
        prepare_caption_corpus("spokencoco", caption_params("spokencoco", entry))
    assert "split_scheme: coco2014" in str(err.value)          # the fix names the params key it takes
    corpus = prepare_caption_corpus("spokencoco", caption_params("spokencoco", {**entry, "split_scheme": "coco2014"}))
    assert Counter(r.split for r in corpus.views["image"]) == Counter({"train": 2, "val": 4})
    corpus = prepare_caption_corpus("spokencoco", caption_params("spokencoco", {
        **entry, "karpathy_split": str(tmp_path / "karpathy.json"), "restval": "skip"}))
    assert Counter(r.split for r in corpus.views["image"]) == Counter({"train": 2, "val": 1, "test": 2})


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_an_empty_flickr8k_list_file_is_called_empty_by_name(tmp_path, on_error):
    fx = build_flickr8k(tmp_path)
    fx.listing.write_text("\n")                      # wav2capt.txt truncated to nothing
    with pytest.raises(DataError, match=r"wav2capt\.txt is empty: it lists no entries") as err:
        fx.prepare(on_error=on_error)
    assert "no usable image" not in err.value.message


def test_error_and_manifest_paths_are_normalised(tmp_path):
    fx = build_places(tmp_path)                      # Hindi and Japanese: base paths "../images", "../hi"
    corpus = fx.prepare()
    sources = [r.source for view in corpus.views.values() for r in view]
    assert sources and not any(".." in Path(s).parts for s in sources), sources
    wav = fx.info["base"] / "hi" / "wavs" / "HI1.wav"
    wav.unlink()
    with pytest.raises(AudioError) as err:
        fx.prepare()
    assert f"audio file {wav} is missing" in err.value.message and "/../" not in err.value.message
