"""Leidal et al. 2017: encoders, the loss terms against hand computations, and a tiny end-to-end
run (train -> export -> evaluate -> report) including resume after a kill and clear errors."""
import copy
import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from vgs.errors import CheckpointError, ParamError, StoreError
from vgs.methods.leidal2017.config import load_run_config
from vgs.methods.leidal2017.data import LeidalData
from vgs.methods.leidal2017.evaluate import evaluate_run
from vgs.methods.leidal2017.export import export_run
from vgs.methods.leidal2017.model import (AudioEncoder, ImageEncoder, LeidalModel, draw_negatives,
                                          information_gain_loss, leidal_loss, similarity_loss)
from vgs.methods.leidal2017.paper import TABLE1, paper_row
from vgs.methods.leidal2017.report import build_report
from vgs.methods.leidal2017.train import LeidalTask, train_run
from vgs.nn.gaussian import frobenius_norm_sum
from vgs.pairing.pairs import View, build_pairs
from vgs.params import Params
from vgs.report.metrics import read_details
from vgs.report.render import render
from vgs.report.tables import read_csv
from tiny_runs import tiny_leidal_run
from tiny_stores import write_tiny_store


# -- the model --------------------------------------------------------------------------------------
def test_encoders_follow_the_paper_architecture():
    img = ImageEncoder(z_dim=128, image_size=(28, 28))
    convs = [m for m in img.conv if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (64, (3, 3), (1, 1)), (128, (3, 3), (2, 2)), (256, (3, 3), (2, 2))]
    assert img.fc[1].out_features == 512 and img.head.mean.out_features == 128
    mean, logvar = img(torch.rand(2, 28, 28))
    assert mean.shape == logvar.shape == (2, 128)
    aud = AudioEncoder(z_dim=128, num_frames=100, num_bins=80)
    convs = [m for m in aud.conv if isinstance(m, torch.nn.Conv1d)]
    # conv 1: 64 filters spanning all 80 bins; then 3x1 convs with stride 2 in time.
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (80, 64, (1,), (1,)), (64, 128, (3,), (2,)), (128, 256, (3,), (2,))]
    assert aud.fc[1].in_features == 256 * 25 and aud.fc[1].out_features == 512
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in aud.modules()) == 4
    mean, logvar = aud.eval()(torch.randn(3, 100, 80))
    assert mean.shape == logvar.shape == (3, 128)


def test_similarity_loss_matches_hand_computation():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    aud = torch.tensor([[2.0, 0.0], [0.0, 0.5], [0.0, 1.0]])
    neg = torch.tensor([1, 2, 0])
    # pair 0: pos 2;   audio0.img1 = 0,   img0.audio1 = 0   -> max(0,1-2+0)+max(0,1-2+0) = 0
    # pair 1: pos 0.5; audio1.img2 = 0.5, img1.audio2 = 1   -> 1.0 + 1.5 = 2.5
    # pair 2: pos 1;   audio2.img0 = 0,   img2.audio0 = 2   -> 0 + 2 = 2
    assert similarity_loss(img, aud, neg, margin=1.0).item() == pytest.approx((0 + 2.5 + 2) / 3)
    assert similarity_loss(img, aud, neg, margin=0.0).item() == pytest.approx((0 + 0.5 + 1.0) / 3)


def test_negatives_are_other_pairs_drawn_uniformly():
    g = torch.Generator().manual_seed(0)
    neg = torch.stack([draw_negatives(8, g) for _ in range(4000)])
    assert not (neg == torch.arange(8)).any()
    counts = torch.stack([(neg[:, 0] == j).sum() for j in range(1, 8)]).float()
    assert counts.min() > 0.8 * counts.mean() and counts.max() < 1.2 * counts.mean()


def test_information_gain_is_the_mean_kl_of_both_posteriors():
    zero = torch.zeros(4, 3)
    assert information_gain_loss(zero, zero, zero, zero).item() == 0.0
    im_mean, im_logvar = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, math.log(4.0)]])
    au_mean, au_logvar = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(0.25), 0.0]])
    # KL(N(m, s^2) || N(0, 1)) = 0.5 * (m^2 + s^2 - 1 - log s^2) per dimension
    kl_image = 0.5 * (1 + 0) + 0.5 * (4 + 4 - 1 - math.log(4))
    kl_audio = 0.5 * (0.25 - 1 - math.log(0.25))
    assert information_gain_loss(im_mean, im_logvar, au_mean, au_logvar).item() == pytest.approx(kl_image + kl_audio)
    # The mean over pairs: duplicating the batch changes nothing; torch's own KL agrees.
    two = [torch.cat([t, t]) for t in (im_mean, im_logvar, au_mean, au_logvar)]
    assert information_gain_loss(*two).item() == pytest.approx(kl_image + kl_audio)
    q = torch.distributions.Normal(im_mean, (0.5 * im_logvar).exp())
    p = torch.distributions.Normal(torch.zeros(2), torch.ones(2))
    assert torch.distributions.kl_divergence(q, p).sum().item() == pytest.approx(kl_image)


def test_total_loss_is_sim_plus_weighted_ig_and_weight_decay():
    torch.manual_seed(0)
    model = LeidalModel(z_dim=8, image_size=(8, 8), num_frames=12, num_bins=6)
    images, audio = torch.rand(4, 8, 8), torch.randn(4, 12, 6)
    terms = leidal_loss(model, images, audio, lambda_ig=0.3, lambda_wd=1e-2, num_samples=5, margin=1.0)
    expected = terms["sim"] + 0.3 * terms["ig"] + 1e-2 * terms["wd"]
    assert terms["loss"].item() == pytest.approx(expected.item())
    assert terms["wd"].item() == pytest.approx(frobenius_norm_sum(model).item())
    n_weight_tensors = sum(1 for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1)
    assert n_weight_tensors == 4 + 2 + 4 + 2  # 3 convs + FC + 2 heads per encoder; no BN or biases


def test_weight_decay_gradient_is_that_of_the_summed_frobenius_norms():
    torch.manual_seed(0)
    model = LeidalModel(z_dim=8, image_size=(8, 8), num_frames=12, num_bins=6)
    frobenius_norm_sum(model).backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    torch.stack([p.norm() for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1]).sum().backward()
    reference = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert ours.keys() == reference.keys() and len(ours) == 12
    for name in ours:
        torch.testing.assert_close(ours[name], reference[name])
    layer = torch.nn.Linear(3, 3, bias=False)
    layer.weight = torch.nn.Parameter(torch.zeros(3, 3))
    frobenius_norm_sum(layer).backward()
    assert torch.equal(layer.weight.grad, torch.zeros(3, 3))  # the zero subgradient, not NaN


def test_channels_last_image_encoder_computes_the_same_function():
    torch.manual_seed(0)
    encoder = LeidalModel(z_dim=8, image_size=(28, 28), num_frames=12, num_bins=6).image.eval()
    images = torch.rand(5, 28, 28)
    mean, logvar = encoder(images)
    encoder.conv.to(memory_format=torch.contiguous_format)
    plain = encoder.head(encoder.fc(encoder.conv(images.unsqueeze(1))))
    torch.testing.assert_close(mean, plain[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logvar, plain[1], rtol=1e-5, atol=1e-6)


def test_paper_table_has_all_eight_rows():
    assert len(TABLE1) == 8
    assert paper_row(2.15e-2) == (0.984, 0.554) and paper_row(0.0) == (0.525, 1.0)
    assert paper_row(0.5) == (None, None)


def test_params_give_one_run_per_table_value():
    params = Params.load("params.yaml")
    lambdas = sorted(load_run_config(params, run).lambda_ig for run in params.section("leidal2017.runs").keys())
    assert lambdas == pytest.approx(sorted(TABLE1))
    paper = load_run_config(Params({**params.data, "profile": "paper"}), "ig0")
    assert (paper.train.lr, paper.train.epochs, paper.train.pairs_per_epoch) == (1e-5, 100, None)
    assert paper.train.betas == (0.95, 0.999) and paper.train.num_samples == 16 and paper.train.batch_pairs == 128
    with pytest.raises(ParamError, match="leidal2017.runs.nope"):
        load_run_config(params, "nope")
    for key, bad in (("lr_schedule", "linear"), ("lambda_ig_warmup_steps", -1)):
        data = copy.deepcopy(params.data)
        data["leidal2017"]["profiles"]["cpu"]["train"][key] = bad
        with pytest.raises(ParamError, match=key):
            load_run_config(Params(data), "ig0")


@pytest.mark.parametrize("section, key", [("train", "val_pairs"), ("train", "pairs_per_epoch"),
                                          ("train", "precision"), ("export", "batch_size"),
                                          ("eval", "inputs_per_modality")])
def test_every_key_comes_from_params_without_a_second_default_in_code(section, key):
    """params.yaml gives every key, so a missing one is an error rather than a silent fallback."""
    data = copy.deepcopy(Params.load("params.yaml").data)
    for where in (data["leidal2017"], *data["leidal2017"]["profiles"].values()):
        (where.get(section) or {}).pop(key, None)
    with pytest.raises(ParamError, match=f"leidal2017.{section}.{key} is missing"):
        load_run_config(Params(data), "ig0")


# -- a tiny end-to-end run -------------------------------------------------------------------------
@pytest.fixture()
def tiny(tmp_path, monkeypatch):
    """Digit-coded 8x8 'images' and 6-bin 'utterances': 10 classes, train/val/test splits."""
    monkeypatch.chdir(tmp_path)
    return tiny_leidal_run(tmp_path)


def _weights(cfg, run_dir):
    import torch as _t
    return _t.load(run_dir / "checkpoint.pt", weights_only=False)["task"]["model"]


def test_tiny_run_end_to_end_and_resume_after_kill(tiny, tmp_path):
    cfg = tiny
    ref = train_run(cfg, progress=False, run_dir=tmp_path / "ref")
    assert ref["steps"] == 9  # 3 epochs x 24 pairs / 8 per batch
    # A run killed after 4 steps (mid-epoch 2) resumes from its checkpoint to the same weights.
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, progress=False, stop_after_steps=4, run_dir=tmp_path / "killed")
    with pytest.raises(CheckpointError, match="unfinished"):
        export_run(cfg, run_dir=tmp_path / "killed", out_path=tmp_path / "x.h5", progress=False)
    resumed = train_run(cfg, progress=False, run_dir=tmp_path / "killed")
    assert resumed["resumed"] and resumed["steps"] == 9
    a, b = _weights(cfg, tmp_path / "ref"), _weights(cfg, tmp_path / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)

    # ...and so to the same exported embeddings and the same metrics.
    results = []
    for name in ("ref", "killed"):
        h5 = tmp_path / f"{name}.h5"
        s = export_run(cfg, run_dir=tmp_path / name, out_path=h5, progress=False)
        assert (s["image"], s["audio"], s["split"]) == (20, 20, "test")
        results.append(evaluate_run(cfg, in_path=h5, out_path=tmp_path / f"{name}.json"))
    for key in ("purity", "svm_acc"):
        assert results[0][key] == results[1][key]
    assert results[0]["inputs"]["audio"] == {"inputs": 20, "available": 20, "samples_per_input": 4,
                                             "embeddings": 80}
    assert results[0]["timing"]["train_steps"] == 9

    from vgs.store.embeddings import read_embeddings
    emb = read_embeddings(tmp_path / "ref.h5")
    assert emb["audio"]["samples"].shape == (20, 4, 8) and emb["image"]["mean"].shape == (20, 8)
    assert emb["attrs"]["lambda_ig"] == 0.01 and emb["attrs"]["data"] == "MNIST + FSDD (2 speakers)"
    assert emb["audio"]["ids"][0].startswith("utt-test") and set(emb["image"]["labels"]) == set(range(10))

    # Bad input: a missing checkpoint and a corrupt embedding file are clear errors.
    with pytest.raises(CheckpointError, match="does not exist"):
        export_run(cfg, run_dir=tmp_path / "never-trained", out_path=tmp_path / "y.h5", progress=False)
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes((tmp_path / "ref.h5").read_bytes()[:1000])
    with pytest.raises(StoreError, match="corrupt"):
        evaluate_run(cfg, in_path=corrupt, out_path=tmp_path / "z.json")
    # A checkpoint from other hyperparameters is not silently exported.
    other = dataclasses.replace(cfg, lambda_ig=0.5)
    with pytest.raises(CheckpointError, match="another configuration"):
        export_run(other, run_dir=tmp_path / "ref", out_path=tmp_path / "w.h5", progress=False)

    # The report over two lambda values: the table, the figures and the target checks.
    configs = []
    for run, lam in (("ig0", 0.0), ("ig2p15e-2", 2.15e-2)):
        c = dataclasses.replace(cfg, run=run, lambda_ig=lam)
        r = json.loads((tmp_path / "ref.json").read_text())
        r.update(run=run, lambda_ig=lam)
        (tmp_path / "evals").mkdir(exist_ok=True)
        (tmp_path / "evals" / f"{run}.json").write_text(json.dumps(r))
        configs.append(c)
    report = build_report(configs, out_dir=tmp_path / "results", eval_dir=tmp_path / "evals")
    render(report, tmp_path / "results")
    rows = read_csv(tmp_path / "results" / "table1.csv")
    assert list(rows[0]) == ["lambda_ig", "purity_paper", "purity_ours", "svm_acc_paper", "svm_acc_ours", "data"]
    assert rows[1]["purity_paper"] == "0.984" and rows[0]["data"] == "MNIST + FSDD (2 speakers)"
    for name in ("figure2_tsne.png", "figure3.png", "report.md", "metrics.json", "details.json"):
        assert (tmp_path / "results" / name).stat().st_size > 0
    # Without lambda_IG = 1 the third target is left out; the two others are claims in metrics.json.
    metrics = json.loads((tmp_path / "results" / "metrics.json").read_text())
    assert set(metrics["claims"]) == {"1_modalities_stay_apart_without", "2_pure_and_modality_invariant"}
    assert set(metrics) == {"ig0", "ig2p15e-2", "claims"} and set(metrics["ig0"]) == {"purity", "svm_acc"}
    assert [c["name"][:2] for c in read_details(tmp_path / "results")["claims"]] == ["1.", "2."]
    assert "n/a" not in (tmp_path / "results" / "report.md").read_text().split("## Table 1")[1].split("##")[0]


def test_lambda_warmup_and_cosine_lr_follow_the_step_count_through_a_resume(tiny, tmp_path):
    from vgs.methods.leidal2017.train import LeidalTask
    t = dataclasses.replace(tiny.train, lambda_ig_warmup_steps=4, lr_schedule="cosine")
    cfg = dataclasses.replace(tiny, train=t)
    task = LeidalTask(cfg, LeidalData(cfg.data, cfg.model.num_frames))
    assert task.total_steps == 9
    weights = []
    for steps in (0, 1, 3, 4, 9):
        task.steps = steps
        weights.append((task.lambda_ig(), task.learning_rate(0)))
    assert [w for w, _ in weights] == pytest.approx([0.0025, 0.005, 0.01, 0.01, 0.01])
    assert weights[0][1] == pytest.approx(1e-3) and weights[-1][1] == pytest.approx(0.0, abs=1e-12)
    assert weights[2][1] == pytest.approx(0.5e-3 * (1 + math.cos(math.pi * 3 / 9)))
    # A run killed mid-warm-up resumes onto the same schedule and so to the same weights.
    train_run(cfg, progress=False, run_dir=tmp_path / "ref")
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, progress=False, stop_after_steps=3, run_dir=tmp_path / "killed")
    train_run(cfg, progress=False, run_dir=tmp_path / "killed")
    a, b = _weights(cfg, tmp_path / "ref"), _weights(cfg, tmp_path / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # ...and differs from the paper's schedule (the options are not ignored).
    train_run(tiny, progress=False, run_dir=tmp_path / "paper")
    c = _weights(tiny, tmp_path / "paper")
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_without_the_nan_fill_of_new_tensors_gives_the_same_weights(tiny, precision):
    cfg = dataclasses.replace(tiny, train=dataclasses.replace(tiny.train, precision=precision))
    data = LeidalData(cfg.data, cfg.model.num_frames)
    weights = {}
    for fill in (True, False):
        task = LeidalTask(cfg, data)
        torch.utils.deterministic.fill_uninitialized_memory = fill
        try:
            task.start_epoch(0)
            for index in range(task.num_batches(0)):
                task.train_step(0, index)
        finally:
            torch.utils.deterministic.fill_uninitialized_memory = False
        weights[fill] = task.model.state_dict()
    assert all(torch.equal(weights[True][k], weights[False][k]) for k in weights[True])


def test_exporting_one_checkpoint_again_gives_the_same_bytes(tiny, tmp_path):
    """Issue 18: every export of one checkpoint at one torch thread count is byte-identical, and
    the wall time (which differs every time) lives beside the file, not in it. Another thread
    count changes the encoders' float reductions, so only the last bits may move."""
    from vgs.store.embeddings import read_embeddings
    train_run(tiny, progress=False, run_dir=tmp_path / "run")
    threads = torch.get_num_threads()
    files = []
    for k in range(3):
        out = tmp_path / f"export{k}.h5"
        export_run(tiny, run_dir=tmp_path / "run", out_path=out, progress=False)
        files.append(out.read_bytes())
    assert files[1] == files[0] and files[2] == files[0]
    try:
        torch.set_num_threads(1 if threads > 1 else 2)
        export_run(tiny, run_dir=tmp_path / "run", out_path=tmp_path / "other-threads.h5", progress=False)
    finally:
        torch.set_num_threads(threads)
    a, b = read_embeddings(tmp_path / "export0.h5"), read_embeddings(tmp_path / "other-threads.h5")
    for view in ("image", "audio"):
        np.testing.assert_allclose(a[view]["samples"], b[view]["samples"], rtol=0, atol=1e-5)
    timing = json.loads((tmp_path / "export0.export.json").read_text())
    assert timing["export_wall_seconds"] >= 0
    result = evaluate_run(tiny, in_path=tmp_path / "export0.h5", out_path=tmp_path / "e.json")
    assert result["timing"]["export_wall_seconds"] == timing["export_wall_seconds"]


def test_encoder_input_sizes_come_from_the_stores_metadata(tiny):
    """The tiny stores hold 8x8 images and 6 fbank bins; nothing in the model assumes MNIST's
    28x28 or fbank80's 80 bins."""
    from vgs.methods.leidal2017.train import build_model
    data = LeidalData(tiny.data, tiny.model.num_frames)
    assert (data.image_size, data.audio_bins) == ((8, 8), 6)
    model = build_model(tiny, data)
    assert model.audio.conv[0].in_channels == 6
    assert model.image.fc[1].in_features == 256 * 2 * 2  # 8 -> 4 -> 2 after two stride-2 convolutions
    mean, _ = model.eval().image(data.images(np.arange(3)))
    assert mean.shape == (3, tiny.model.z_dim)
    # A store of multi-channel images is refused by name, not failed on deep inside a convolution.
    items = [(f"rgb-{k}", np.zeros((8, 8), np.float32), k, "train", "") for k in range(2)]
    write_tiny_store("data/features/rgb.zarr", items, "mnist", "image", item_shape=(1, 8, 8))
    with pytest.raises(StoreError, match=r"rgb.zarr holds items of shape \[1, 8, 8\]"):
        LeidalData(dataclasses.replace(tiny.data, image_store="data/features/rgb.zarr"), 10)


def test_pair_store_must_match_configured_stores(tiny):
    bad = dataclasses.replace(tiny.data, audio_store="data/features/img.zarr")
    with pytest.raises(StoreError, match="image store, not audio"):
        LeidalData(bad, 10)
    build_pairs([View("audio", "data/features/aud.zarr"), View("image", "data/features/img.zarr")],
                "data/pairs/swapped.zarr", seed=5, epochs={"train": 1, "val": 1, "test": 1})
    data = LeidalData(dataclasses.replace(tiny.data, pairs="data/pairs/swapped.zarr"), 10)
    img_idx, aud_idx = data.pair_indices("train", 0)
    assert data.anchor_modality == "audio"
    assert np.array_equal(data.image_store.labels[img_idx], data.audio_store.labels[aud_idx])
    with pytest.raises(StoreError, match="does not exist"):
        LeidalData(dataclasses.replace(tiny.data, pairs="data/pairs/none.zarr"), 10).pairs


def test_target_checks_read_the_numbers():
    from vgs.methods.leidal2017.report import check_targets

    def rows(pairs):
        return [{"lambda_ig": lam, "purity": p, "svm_acc": s} for lam, (p, s) in pairs.items()]

    paper_like = rows({0.0: (0.525, 1.0), 2.15e-2: (0.984, 0.554), 1.0: (0.679, 0.516)})
    claims = check_targets(paper_like)
    assert [c.verdict for c in claims] == ["holds", "holds", "holds"]
    # The `paper` column is the same check on the paper's Table 1, whatever our rows are.
    assert claims[2].paper == "purity 0.679 vs best 0.984" and claims[2].rule.startswith("lambda_IG = 1:")
    # No setting is both pure and modality-invariant; lambda 0 is as pure as the best.
    flat = rows({0.0: (0.95, 0.97), 2.15e-2: (0.96, 0.80), 1.0: (0.96, 0.7)})
    claims = check_targets(flat)
    assert [c.verdict for c in claims] == ["does not hold"] * 3
    assert "closest" in claims[1].ours and claims[1].paper.startswith("lambda 0.0215 (purity 0.984")
    # A target whose lambda_IG was not run is left out, and the claims are numbered as they stand.
    assert [c.name.split(".")[0] for c in check_targets(rows({2.15e-2: (0.98, 0.5), 1.0: (0.6, 0.5)}))] == ["1", "2"]
