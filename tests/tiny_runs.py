"""Tiny training runs that two test modules share: each paper's tiny stores, pairs and params, the
same for its own tests and for its device tests (tests/test_device_<paper>.py), and the regression
task of the trainer and device tests (Leidal's stores also feed tests/test_dvc_results.py's tiny
DVC project). Where the two callers' params differ, the difference is an argument, so each test
module still says what it trains on."""
import contextlib
import copy
from pathlib import Path

import numpy as np
import torch
import yaml

from conftest import REPO
from image_caption_stores import _caption_manifest, _image_manifest, _store
from tiny_stores import write_tiny_store
from vgs.features.config import ImageFeatureConfig, load_feature_config
from vgs.methods.leidal2017.config import (DataConfig, EvalConfig, ExportConfig, ModelConfig, RunConfig,
                                          TrainConfig)
from vgs.pairing.instance import build_instance_pairs
from vgs.pairing.pairs import View, build_pairs
from vgs.params import Params


# -- MNIST/FSDD-like digits (Leidal 2017, PVAE 2018) --------------------------------------------------
def _digit_coded_items(per_class: dict[str, int], frames: tuple[int, int]) -> tuple[list, list]:
    """Digit-coded 8x8 images and 6-bin 'utterances' of 10 classes, as write_tiny_store items.

    Every item draws its image, its length in [frames) and its frames from one generator in turn,
    so changing any count or range changes every later item."""
    rng = np.random.default_rng(0)
    images, audio = [], []
    for split, n in per_class.items():
        for label in range(10):
            for k in range(n):
                img = rng.uniform(0, 0.2, (8, 8)).astype(np.float32)
                img[label // 5 * 4:(label // 5 + 1) * 4, label % 5] = 1.0
                images.append((f"img-{split}-{label}-{k}", img, label, split, ""))
                feats = rng.normal(0, 0.3, (int(rng.integers(*frames)), 6)).astype(np.float32)
                feats[:, label % 6] += 2.0 + label // 6
                audio.append((f"utt-{split}-{label}-{k}", feats, label, split, f"spk{k % 2}"))
    return images, audio


LEIDAL_DATA = DataConfig("data/pairs/tiny.zarr", "data/features/img.zarr", "data/features/aud.zarr")


def write_leidal_stores(root: Path, data: DataConfig = LEIDAL_DATA) -> None:
    """The image and audio stores and their 3-epoch pair store at `data`'s paths under `root`."""
    images, audio = _digit_coded_items({"train": 4, "val": 2, "test": 2}, frames=(6, 16))
    # A pair store records its stores' paths as given: relative, as the run config names them.
    with contextlib.chdir(root):
        write_tiny_store(data.image_store, images, "mnist", "image", item_shape=(8, 8))
        write_tiny_store(data.audio_store, audio, "fsdd", "audio")
        build_pairs([View("image", data.image_store), View("audio", data.audio_store)], data.pairs, seed=5,
                    epochs={"train": 3, "val": 1, "test": 1})


def tiny_leidal_run(root: Path) -> RunConfig:
    """10 classes of 8x8 'images' and 6-bin 'utterances', paired; a 3-epoch, 9-step run, its paths
    relative to `root` (the caller's working directory)."""
    write_leidal_stores(root)
    train = TrainConfig(num_samples=3, batch_pairs=8, margin=1.0, lambda_wd=1e-6, lr=1e-3, betas=(0.95, 0.999),
                        eps=1e-8, lr_decay=0.9, lr_decay_every_epochs=10, epochs=3, pairs_per_epoch=24, val_pairs=8,
                        checkpoint_every_seconds=120.0, num_threads=None, precision="fp32",
                        lambda_ig_warmup_steps=0, lr_schedule="step")
    return RunConfig(run="tiny", lambda_ig=0.01, seed=11, profile="cpu", data=LEIDAL_DATA,
                     model=ModelConfig(z_dim=8, num_frames=10), train=train,
                     export=ExportConfig(split="test", num_samples=4, batch_size=7),
                     eval=EvalConfig(inputs_per_modality=None, kmeans_k=10, svm_per_modality=30, svm_train=40,
                                     tsne_per_modality=10))


def tiny_pvae(root: Path, *, epochs: int, lr: float, val_every: int, inertia_max_k: int, cpu_profile: dict,
              models: dict) -> Params:
    """Digit-coded 8x8 images and 6-bin log-mel 'utterances' with silent edges (10 classes), paired
    for `epochs` epochs, and root/params.yaml training on them for `epochs` epochs; paths relative
    to `root` (the caller's working directory)."""
    images, audio = _digit_coded_items({"train": 3, "val": 2, "test": 3}, frames=(4, 12))
    silence = np.full((2, 6), -30.0, dtype=np.float32)     # for the VAD to trim
    audio = [(utt, np.concatenate([silence, feats, silence]), label, split, speaker)
             for utt, feats, label, split, speaker in audio]
    (root / "data").mkdir()
    with contextlib.chdir(root):
        write_tiny_store("data/img.zarr", images, "mnist", "image", (8, 8))
        write_tiny_store("data/aud.zarr", audio, "fsdd", "audio")
        build_pairs([View("audio", "data/aud.zarr"), View("image", "data/img.zarr")], "data/pairs.zarr", seed=1,
                    epochs={"train": epochs, "val": 1, "test": 1})
    params = {
        "profile": "cpu", "seed": 5,
        "pvae2018": {
            "data": {"audio_store": "data/aud.zarr", "image_store": "data/img.zarr", "pairs": "data/pairs.zarr",
                     "image_likelihood_std": None, "vad": {"threshold_db": 40, "context_frames": 0, "min_frames": 2}},
            "net": {"hidden": 8, "latent_dim": 3, "image_channels": [2, 3]},
            "train": {"epochs": epochs, "batch_size": 6, "lr": lr, "grad_clip": 100.0, "length_sort_batches": 2,
                      "coherence_weight": 1.0, "val_every": val_every, "val_images": 20,
                      "checkpoint_every_seconds": 1000},
            "export": {"splits": ["val", "test"]},
            "eval": {"k": 10, "kmeans_n_init": 1, "inertia_max_k": inertia_max_k, "purity_splits": ["val", "test"],
                     "tsne_audio_points": 20, "tsne_image_points": 20, "tsne_perplexity": 5},
            "profiles": {"cpu": cpu_profile, "paper": {}},
            "models": models,
        },
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return Params.load(root / "params.yaml")


# -- SMART ---------------------------------------------------------------------------------------------
def smart_pairs_and_params(*, seed: int, judge_batch_size: int, judge_epochs: int, transcoder_layers: int,
                           phases: int, val_items: int) -> Params:
    """The image-led and audio-led pair stores over img.zarr and aud.zarr in the working directory,
    and SMART params reading them. The callers write the stores: their classes and items differ."""
    epochs = {"train": 2, "val": 1, "test": 1}
    build_pairs([View("image", "img.zarr"), View("audio", "aud.zarr")], "data/pairs/tiny-img.zarr", 5, epochs)
    build_pairs([View("audio", "aud.zarr"), View("image", "img.zarr")], "data/pairs/tiny-aud.zarr", 5, epochs)
    ae = {"widths": [4, 4], "convs_per_stage": 1, "sampling": "stride"}
    judge = {"widths": [4], "input_pool": 1, "epochs": judge_epochs}
    return Params({
        "seed": seed, "profile": "cpu",
        "smart": {
            "data": {"image_store": "img.zarr", "audio_store": "aud.zarr", "image_pairs": "tiny-img",
                     "audio_pairs": "tiny-aud", "audio_frames": 8, "audio_scale_percentiles": [1.0, 99.0]},
            "judges": {"batch_size": judge_batch_size, "lr": 0.01, "mlc": judge, "glc": judge},
            "model": {"latent_dim": 8, "transcoder_layers": transcoder_layers, "transcoder_hidden": 8,
                      "leaky_slope": 0.2, "image": ae, "audio": ae},
            "train": {"batch_size": 4, "lr": 0.01, "lr_final": 0.001, "weight_reconstruction": 1.0,
                      "weight_guide": 1.0, "first": "image", "phases": phases,
                      "steps_per_phase": {"image": 2, "audio": 2}, "val_items": val_items},
            "styles": {"hybrid": {"pretrain_steps": {"image": 1, "audio": 1}},
                       "classroom": {"pretrain_steps": {"image": 0, "audio": 0}}},
            "evaluate": {"samples_per_digit": 1},
        },
    })


# -- scenes with spoken captions (Mortazavi 2020, Crabtree 2021) ----------------------------------------
SCENE_SPLITS = {"train": 8, "val": 10, "test": 10}   # recall@10 needs at least 10 candidates
CRABTREE_VIEWS = ["image", "en", "hi", "ja"]
CRABTREE_SPEECH_WIDTHS = [8, 8, 16, 16, 16]          # every width divisible by the 8 attention heads


def _scene_pairs(root: Path, languages: list[str], audio_feature: str, pairs: str) -> None:
    """An instance pair store of 32x32 scene images and one caption view per language."""
    audio_cfg = load_feature_config(Params.load(str(REPO / "params.yaml")), audio_feature)
    image_cfg = ImageFeatureConfig(name="scene32", kind="image", size=32, resize_method="bilinear", scale=1 / 255)
    views = [View("image", _store(root, _image_manifest(root / "corpus", size=(40, 32), splits=SCENE_SPLITS),
                                  image_cfg))]
    for lang in languages:
        views.append(View(lang, _store(root, _caption_manifest(root / "corpus", lang, splits=SCENE_SPLITS),
                                       audio_cfg)))
    build_instance_pairs(views, pairs, seed=1, epochs={"train": 1, "val": 1, "test": 1})


def write_mortazavi_pairs(root: Path) -> None:
    """root/pairs.zarr: image and English MFCC captions, 8/10/10 datapoints."""
    # mortazavi_params reads "pairs.zarr" from the working directory, as written here.
    with contextlib.chdir(root):
        _scene_pairs(root, ["en"], "mfcc40", "pairs.zarr")


def mortazavi_params(epochs: int, run_overrides: dict[str, dict] | None = None) -> Params:
    """params.yaml's mortazavi2020 section at test size, `run_overrides` (run -> keys) over its runs."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    m = copy.deepcopy(raw["mortazavi2020"])
    m["data"].update(pairs="pairs.zarr", corpus_root=".", features_dir="/", data_name="tiny test corpus")
    m["train"].update(epochs=epochs, batch_size=4, checkpoint_every_seconds=120, num_threads=1)
    m["model"].update(image_net="densenet_cpu", dim_divisor=32)
    m["profiles"] = {"paper": {}, "cpu": {}}
    for run, keys in (run_overrides or {}).items():
        m["runs"][run].update(keys)
    raw["mortazavi2020"] = m
    raw["profile"] = "cpu"
    return Params(raw, "", "test params")


def write_crabtree_pairs(root: Path) -> str:
    """A 4-view instance pair store (image, en, hi, ja; 40 log-mel bins) of 8/10/10 datapoints under
    `root`; its path."""
    pairs = str(root / "pairs.zarr")
    _scene_pairs(root, CRABTREE_VIEWS[1:], "logmel40", pairs)
    return pairs


def crabtree_params(pairs: str, runs: dict | None = None, **sections: dict) -> Params:
    """params.yaml's crabtree2021 section at test size reading `pairs`: `sections` update its
    sections after the test sizes, `runs` replaces its runs."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    c = copy.deepcopy(raw["crabtree2021"])
    c["data"].update(pairs=pairs, corpus_root=".", features_dir="/", data_name="tiny test corpus", train_scenes=None)
    c["model"].update(speech_widths=CRABTREE_SPEECH_WIDTHS, image_net="cpu", embed_dim=16, transformer_feedforward=32)
    c["train"].update(epochs=2, batch_size=4, checkpoint_every_seconds=120, num_threads=1)
    c["profiles"] = {"paper": {}, "cpu": {}}
    for section, values in sections.items():
        c[section].update(values)
    if runs is not None:
        c["runs"] = runs
    raw["crabtree2021"] = c
    raw["profile"] = "cpu"
    return Params(raw, "", "test params")


# -- the trainer ---------------------------------------------------------------------------------------
class ShuffledRegression:
    """The Trainer's task protocol around a regression of `self.y` on `self.x` by `self.model` with
    the optimiser `self.opt`, which the subclass sets along with its train_step: batches of 8 rows
    in an order drawn from `order_seed` and the epoch alone, so that a resumed run sees the rows an
    uninterrupted one would."""

    BATCH = 8

    def __init__(self, order_seed: int):
        self.order_seed = order_seed
        self.order = None

    def state_dict(self):
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, s):
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["opt"])

    def start_epoch(self, epoch):
        self.order = np.random.default_rng([self.order_seed, epoch]).permutation(len(self.x))

    def num_batches(self, epoch):
        return len(self.x) // self.BATCH

    def batch_rows(self, index: int) -> torch.Tensor:
        return torch.as_tensor(self.order[index * self.BATCH:(index + 1) * self.BATCH])

    def end_epoch(self, epoch):
        return {}
