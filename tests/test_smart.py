"""SMART (vgs/methods/smart): guide selection, the alternating freeze schedule, the evaluation
chain, resume after a kill, and the stage functions end to end on tiny synthetic stores."""
import csv
import json

import numpy as np
import pytest
import torch
from torch import nn

from vgs.methods.smart.config import model_config, train_config
from vgs.methods.smart.data import Modality, SmartData, load_data
from vgs.methods.smart.evaluate import evaluate, evaluate_style
from vgs.methods.smart.guides import closest_to_centre, guide_table
from vgs.methods.smart.judges import train_judges
from vgs.methods.smart.model import ConvAutoencoder, SmartNet, count_layers
from vgs.methods.smart.report import stage as report_stage
from vgs.methods.smart.train import SmartTask, build_net, build_schedule, train_style
from vgs.paths import results_dir
from vgs.report.render import Claim, claim_key
from vgs.report.verdicts import FAILS, HOLDS
from vgs.store.feature_store import FeatureStoreWriter
from tiny_runs import smart_pairs_and_params

CLASSES = 4


# -- guide selection -----------------------------------------------------------------------------
def test_closest_to_centre_picks_the_member_nearest_the_mean():
    latents = np.array([[0.0, 0.0], [10.0, 0.0], [4.5, 0.2], [7.0, 0.0],   # group 0: mean (5.375, 0.05)
                        [1.0, 1.0], [1.0, 3.0], [1.0, 2.2]])                # group 1: mean (1, 2.067)
    groups = np.array([0, 0, 0, 0, 1, 1, 1])
    assert closest_to_centre(latents, groups) == {0: 2, 1: 6}


def test_guide_table_counts_repeated_partners_once_and_uses_the_frozen_encoder():
    # Item 9 co-occurs with concept 0 five times; counted five times it would pull the centre
    # onto itself. Counted once, the centre of {0, 9, 4} is 4.33 and item 4 is the guide.
    positions = {0: 0.0, 4: 4.0, 9: 9.0, 20: 20.0, 21: 21.0}
    partners = np.array([9, 9, 9, 9, 9, 0, 4, 20, 21, 21])
    concepts = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1])
    calls = []

    def encode(items):
        calls.append(list(items))
        return np.array([[positions[int(i)], 0.0] for i in items])

    items, latents = guide_table(partners, concepts, encode)
    assert items == {0: 4, 1: 20}
    np.testing.assert_allclose(latents[0], [4.0, 0.0])
    assert calls == [[0, 4, 9, 20, 21]]  # every partner encoded once, in one call


# -- tiny synthetic corpus -------------------------------------------------------------------------
def _write_store(path, modality, items):
    dim = items[0][1].shape[1]
    w = FeatureStoreWriter(path, dim)
    for uid, feats, label, split in items:
        w.add(uid, feats, label=label, speaker="s1" if modality == "audio" else None, split=split)
    attrs = {"corpus": "tiny" + modality, "modality": modality, "config": {"name": "tiny"},
             "config_hash": "0", "source_manifest_sha256": "0"}
    if modality == "image":
        attrs["item_shape"] = list(items[0][1].shape)
    w.close(attrs)


def _splits(n_train=6, n_val=2, n_test=2):
    return ["train"] * n_train + ["val"] * n_val + ["test"] * n_test


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """8x8 'images' and 8-band 'log-mels' of 4 classes, their pair stores, and tiny params."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    images, audio = [], []
    for k in range(CLASSES):
        for j, split in enumerate(_splits()):
            img = np.zeros((8, 8), np.float32)
            img[2 * k:2 * k + 2] = 1.0
            images.append((f"i{k}_{j}", np.clip(img + 0.1 * rng.random((8, 8)), 0, 1).astype(np.float32), k, split))
            frames = rng.normal(5.0, 1.0, size=(5 + 2 * j % 7, 8)).astype(np.float32)
            frames[:, 2 * k:2 * k + 2] += 10.0
            audio.append((f"a{k}_{j}", frames, k, split))
    _write_store("img.zarr", "image", images)
    _write_store("aud.zarr", "audio", audio)
    return smart_pairs_and_params(seed=3, judge_batch_size=8, judge_epochs=2, transcoder_layers=5, phases=4,
                                  val_items=4)


def test_audio_is_cropped_or_padded_to_a_fixed_image_in_unit_range(tiny):
    data = load_data(tiny)
    assert tuple(data.audio.x.shape) == (len(data.audio.labels), 1, 8, 8)   # (N, 1, mel band, frame)
    assert data.audio.x.min() >= 0 and data.audio.x.max() <= 1
    assert data.audio.description["cropped_items"] > 0
    # a 5-frame item is zero-padded after its last frame
    first = data.audio.x[0, 0]
    assert torch.all(first[:, 5:] == 0) and torch.any(first[:, :5] > 0)


def _snapshot(modules):
    return [t.detach().clone() for m in modules for t in list(m.parameters()) + list(m.buffers())]


def _changed(before, modules):
    after = [t for m in modules for t in list(m.parameters()) + list(m.buffers())]
    return [not torch.equal(a, b) for a, b in zip(before, after)]


def test_each_phase_trains_only_its_modality_group(tiny):
    data = load_data(tiny, pairs=True)
    cfg = train_config(tiny, "hybrid")
    net = build_net(model_config(tiny), {m: data[m].input_hw for m in ("image", "audio")})
    schedule = build_schedule(cfg["pretrain_steps"], cfg["phases"], cfg["steps_per_phase"], cfg["first"])
    assert [(p.kind, p.modality) for p in schedule] == [
        ("pretrain", "image"), ("pretrain", "audio"), ("reciprocate", "image"), ("reciprocate", "audio"),
        ("reciprocate", "image"), ("reciprocate", "audio")]
    task = SmartTask(net, data, schedule, cfg, seed=3)
    for epoch, phase in enumerate(schedule):
        learner, frozen = phase.modality, "audio" if phase.modality == "image" else "image"
        task.start_epoch(epoch)
        assert all(p.requires_grad for p in net.group_parameters(learner))
        assert not any(p.requires_grad for p in net.group_parameters(frozen))
        assert not any(m.training for g in net.group(frozen) for m in g.modules())
        ae_before = _snapshot([net.autoencoders[learner]])
        tc_before = _snapshot([net.transcoders[learner]])
        frozen_before = _snapshot(net.group(frozen))
        task.train_step(epoch, 0)
        assert not any(_changed(frozen_before, net.group(frozen))), f"phase {epoch} changed the frozen {frozen} group"
        assert any(_changed(ae_before, [net.autoencoders[learner]]))
        # The transcoder learns only in reciprocating phases (pre-training is reconstruction alone).
        assert any(_changed(tc_before, [net.transcoders[learner]])) == (phase.kind == "reciprocate")
        if phase.kind == "reciprocate":
            # one guide per concept taught in this phase, drawn from the other modality, same concept
            taught = set(data[learner].labels[task._episodes[:, 0]].tolist())
            guides = task.guides[epoch]["items"]
            assert set(guides) == taught
            assert all(data[frozen].labels[item] == k for k, item in guides.items())
        task.end_epoch(epoch)


# -- evaluation chain ------------------------------------------------------------------------------
class _Code(nn.Module):
    """Stand-in autoencoder: an item 'is' its mean value; encode/decode move between that value and
    a latent of four copies, so the chain's arithmetic is easy to follow."""

    def __init__(self, shape):
        super().__init__()
        self.shape = shape

    def encode(self, x):
        return x.mean(dim=(1, 2, 3))[:, None].repeat(1, 4)

    def decode(self, z):
        return z[:, :1, None, None].expand(len(z), 1, *self.shape).clone()

    def forward(self, x):
        z = self.encode(x)
        return z, self.decode(z)


class _Shift(nn.Module):
    def __init__(self, by):
        super().__init__()
        self.by = by

    def forward(self, z):
        return z + self.by


class _Judge(nn.Module):
    """Reads digit = round(10 * mean) - offset, so a chain that skips the transcoder's shift is wrong."""

    def __init__(self, offset):
        super().__init__()
        self.offset = offset

    def predict(self, x):
        return torch.round(10 * x.mean(dim=(1, 2, 3))).long() - self.offset


def _modality(name, shape, labels, values, splits):
    x = torch.tensor(values, dtype=torch.float32)[:, None, None, None].expand(len(values), 1, *shape).clone()
    return Modality(name, "-", x, np.array(labels), np.array(splits, dtype=object),
                    np.array([f"{name}{i}" for i in range(len(labels))], dtype=object), name, {}, shape, "-")


def test_evaluation_chain_encodes_transcodes_decodes_then_judges():
    # image digit k has mean k/10 -> T_I->A adds 0.1 -> D_A -> GLC reads 10*mean - 1 = k.
    # audio digit k has mean k/10 -> T_A->I adds 0.2 -> D_I -> MLC reads 10*mean - 2 = k.
    splits = ["test"] * 4 + ["val"] * 2
    image = _modality("image", (4, 4), [1, 2, 3, 4, 1, 2], [0.1, 0.2, 0.3, 0.5, 0.1, 0.2], splits)  # last test item is off
    audio = _modality("audio", (6, 6), [0, 3, 5, 7, 1, 1], [0.0, 0.3, 0.5, 0.7, 0.1, 0.1], splits)
    net = SmartNet({"image": _Code((4, 4)), "audio": _Code((6, 6))}, {"image": _Shift(0.1), "audio": _Shift(0.2)})
    judges = {"mlc": _Judge(offset=2), "glc": _Judge(offset=1)}
    out = evaluate(net, judges, SmartData(image, audio), samples_per_digit=1)
    m = out["metrics"]
    assert m["image_to_audio_test_acc"] == pytest.approx(0.75)
    assert m["audio_to_image_test_acc"] == 1.0
    assert m["image_to_audio_val_acc"] == m["audio_to_image_val_acc"] == 1.0
    assert out["samples"]["image_to_audio"]["predictions"] == [1, 2, 3, 5]
    assert out["samples"]["image_to_audio"]["outputs"].shape == (4, 6, 6)   # images became audio
    assert out["samples"]["audio_to_image"]["outputs"].shape == (4, 4, 4)


def test_paper_profile_has_21_convolutions_per_module():
    ae = ConvAutoencoder((96, 96), [8, 8, 8, 8, 8], latent_dim=512, convs_per_stage=2, sampling="pool",
                         leaky_slope=0.2)
    assert count_layers(ae) == 21
    assert count_layers(ae, (nn.Linear,)) == 2
    z, y = ae(torch.rand(2, 1, 96, 96))
    assert z.shape == (2, 512) and y.shape == (2, 1, 96, 96)


# -- resume and the stages -------------------------------------------------------------------------
def test_killed_training_resumes_to_identical_weights(tiny):
    reference = train_style(tiny, "hybrid", out_dir="ref", progress=False)
    with pytest.raises(KeyboardInterrupt):
        train_style(tiny, "hybrid", out_dir="killed", progress=False, stop_after_steps=5)
    resumed = train_style(tiny, "hybrid", out_dir="killed", progress=False)
    assert resumed["resumed"] and not reference["resumed"]
    a, b = torch.load("ref/model.pt"), torch.load("killed/model.pt")
    for key, value in a["net"].items():
        assert torch.equal(value, b["net"][key]), key
    # A finished run is never reused (DVC re-runs training only when something changed or when
    # forced): it trains again from scratch, to the same weights.
    again = train_style(tiny, "hybrid", out_dir="killed", progress=False)
    assert not again["resumed"]
    c = torch.load("killed/model.pt", weights_only=True)
    assert all(torch.equal(value, c["net"][key]) for key, value in a["net"].items())
    assert a["guides"].keys() == b["guides"].keys()
    for phase, guide in a["guides"].items():
        assert guide["items"] == b["guides"][phase]["items"]
        assert all(torch.equal(v, b["guides"][phase]["latents"][k]) for k, v in guide["latents"].items())


def test_stages_end_to_end_write_table_figure_and_report(tiny):
    judges = train_judges(tiny, progress=False)
    assert 0 <= judges["mlc"]["test_acc"] <= 1 and judges["glc"]["test_items"] == CLASSES * 2
    for style in ("hybrid", "classroom"):
        train_style(tiny, style, progress=False)
        evaluate_style(tiny, style)
    printed = report_stage(tiny, progress=False)
    out = results_dir("smart")
    with open(out / "table1.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6
    assert [r["acc_paper"] for r in rows] == ["99.47", "96.15", "99.59", "97.33", "99.05", "97.19"]
    assert all(r["data"] and r["acc_ours"] for r in rows)
    # The three targets are claims: a threshold each, so holds / does not hold.
    details = json.loads((out / "details.json").read_text())
    claims = details["claims"]
    assert [c["name"] for c in claims] == ["1. MLC test accuracy >= 98%", "2. GLC test accuracy >= 90%",
                                           "3. Both conversion directions >= 90% in one style"]
    assert [c["verdict"] for c in claims[:2]] == [HOLDS if details["mlc_test_acc"] >= 0.98 else FAILS,
                                                  HOLDS if details["glc_test_acc"] >= 0.90 else FAILS]
    floors = [min(details[f"{s}_image_to_audio_test_acc"], details[f"{s}_audio_to_image_test_acc"])
              for s in ("hybrid", "classroom")]
    assert claims[2]["verdict"] == (HOLDS if max(floors) >= 0.90 else FAILS)
    assert "targets_met" not in details
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"mlc_acc", "glc_acc", "hybrid", "classroom", "claims"}
    assert [metrics["mlc_acc"], metrics["glc_acc"]] == [float(r["acc_ours"]) for r in rows[:2]]
    assert metrics["claims"] == {claim_key(i, Claim(**c)): int(c["verdict"] == HOLDS)
                                 for i, c in enumerate(claims)}
    assert (out / "conversions.png").stat().st_size > 0
    assert (out / "plot_accuracy.csv").read_text().startswith("conversion,acc_ours,acc_paper\n")
    text = (out / "report.md").read_text()
    for heading in ("Table 1", "Data", "Configuration", "Diagnostics (not in the paper)", "Time and hardware",
                    "Comparison with the paper"):
        assert f"\n## {heading}\n" in text
    assert "![conversions](conversions.png)" in text
    assert all(f"  {c['name']}: {c['verdict']}" in printed for c in claims)
