"""PVAE (Hsu & Glass 2018): objective terms by hand, padding invariance, VAD, resume, tiny pipeline."""
import json
import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from vgs.features.vad import frame_log_energy, speech_mask, trim_silence
from vgs.methods.pvae2018.config import load_run_config
from vgs.methods.pvae2018.evaluate import load_eval_config
from vgs.methods.pvae2018.data import DigitData
from vgs.methods.pvae2018.model import AUDIO, NetConfig, build_model
from vgs.methods.pvae2018.objective import (Weights, audio_log_likelihood, coherence_kl, contrastive_hinge,
                                            derangement, elbo, elbo_terms, image_log_likelihood,
                                            normalised_hsic, objective, rbf_kernel)
from vgs.methods.pvae2018.inference import load_trained
from vgs.methods.pvae2018.train import PVAETask, train_run
from vgs.nn.gaussian import kl_to_standard_normal
from vgs.nn.recurrent import LSTMEncoder, LSTMFrameDecoder, pad_batch
from tiny_runs import tiny_pvae
from tiny_stores import write_tiny_store
from vgs.train.trainer import load_checkpoint

LOG2PI = math.log(2 * math.pi)


# -- ELBO terms --------------------------------------------------------------------------------------
def test_prior_kl_matches_closed_form():
    # KL(N(m, s^2) || N(0, 1)) = 0.5 (m^2 + s^2 - 1 - ln s^2), summed over dimensions.
    mean = torch.tensor([[1.0, -2.0], [0.0, 0.5]])
    logvar = torch.tensor([[0.0, math.log(4.0)], [math.log(0.25), 0.0]])
    by_hand = torch.tensor([0.5 * (1 + 1 - 1 - 0) + 0.5 * (4 + 4 - 1 - math.log(4.0)),
                            0.5 * (0 + 0.25 - 1 - math.log(0.25)) + 0.5 * 0.25])
    assert torch.allclose(kl_to_standard_normal(mean, logvar), by_hand)
    reference = kl_divergence(Normal(mean, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
    assert torch.allclose(kl_to_standard_normal(mean, logvar), reference)


def test_reconstruction_terms_by_hand_and_padding_ignored():
    # Unit-variance Gaussian: log N(x; mu, 1) = -0.5 ln 2pi - 0.5 (x - mu)^2 per element.
    x = torch.zeros(2, 3, 1)
    mean = torch.ones(2, 3, 1)
    mean[1, 2] = 1000.0  # a padded frame: must not count
    ll = audio_log_likelihood(x, mean, torch.tensor([3, 2]))
    frame = -0.5 * LOG2PI - 0.5
    assert torch.allclose(ll, torch.tensor([3 * frame, 2 * frame]))
    img = image_log_likelihood(torch.zeros(1, 2, 2), torch.full((1, 2, 2), 2.0))
    assert torch.allclose(img, torch.tensor([4 * (-0.5 * LOG2PI - 2.0)]))


def test_elbo_is_reconstruction_minus_prior_kls():
    torch.manual_seed(0)
    model = build_model("pvae", NetConfig(audio_dim=3, image_size=8, hidden=6, latent_dim=2, image_channels=(2, 2)))
    x, lengths = pad_batch([np.random.rand(4, 3), np.random.rand(2, 3)])
    batch = {"audio": x, "audio_lengths": lengths, "image": torch.rand(2, 8, 8)}
    post = model.infer_multimodal(batch)
    terms = elbo_terms(model, batch, post)
    assert set(terms) == {"rec_audio", "rec_image", "kl_s", "kl_a", "kl_i"}
    for name in ("s", "a", "i"):
        assert torch.allclose(terms[f"kl_{name}"], kl_to_standard_normal(*post[name]))
    expected = terms["rec_audio"] + terms["rec_image"] - terms["kl_s"] - terms["kl_a"] - terms["kl_i"]
    assert torch.allclose(elbo(terms), expected)


# -- coherence and contrastive terms ---------------------------------------------------------------
def test_coherence_is_kl_from_multimodal_to_unimodal_posterior():
    mm = {"s": (torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, math.log(2.0)]])),
          "a": (torch.tensor([[2.0]]), torch.tensor([[0.0]])),
          "i": (torch.tensor([[5.0]]), torch.tensor([[0.0]]))}   # not inferred by the audio net: ignored
    uni = {"s": (torch.tensor([[1.0, 1.0]]), torch.tensor([[math.log(4.0), 0.0]])),
           "a": (torch.tensor([[0.0]]), torch.tensor([[math.log(0.5)]]))}
    # KL(N(m1, v1) || N(m2, v2)) = 0.5 (ln v2/v1 + (v1 + (m1 - m2)^2) / v2 - 1)
    kl = lambda m1, v1, m2, v2: 0.5 * (math.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1)  # noqa: E731
    by_hand = kl(0, 1, 1, 4) + kl(1, 2, 1, 1) + kl(2, 1, 0, 0.5)
    assert coherence_kl(mm, uni).item() == pytest.approx(by_hand, rel=1e-6)
    assert coherence_kl(uni, {k: uni[k] for k in uni}).abs().max().item() < 1e-7
    # Direction matters: KL(q_mm || q_uni), not the reverse.
    reverse = kl(1, 4, 0, 1) + kl(1, 1, 1, 2) + kl(0, 0.5, 2, 1)
    assert abs(by_hand - reverse) > 0.1


def test_contrastive_hinge_by_hand():
    mu = {"audio": torch.tensor([[0.0], [3.0]]), "image": torch.tensor([[0.0], [1.0]])}
    negatives = {"audio": torch.tensor([1, 0]), "image": torch.tensor([1, 0])}
    k = lambda d2: math.exp(-d2)  # noqa: E731  (gamma = 1)
    # audio anchors vs image: row 0 pos k(0,0)=1, neg k(0,1); row 1 pos k(3,1), neg k(3,0)
    # image anchors vs audio: row 0 pos k(0,0)=1, neg k(0,3); row 1 pos k(1,3), neg k(1,0)
    row0 = max(0, 0.5 - 1 + k(1)) + max(0, 0.5 - 1 + k(9))
    row1 = max(0, 0.5 - k(4) + k(9)) + max(0, 0.5 - k(4) + k(1))
    out = contrastive_hinge(mu, negatives, gamma=1.0, margin=0.5)
    assert out.tolist() == pytest.approx([row0, row1], rel=1e-6)
    assert row0 == 0.0 and row1 > 0
    assert rbf_kernel(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.0]), 0.25).item() == pytest.approx(math.exp(-1))


def test_negatives_never_pair_a_sample_with_itself():
    g = torch.Generator().manual_seed(3)
    for n in (2, 3, 7, 64):
        for _ in range(20):
            perm = derangement(n, g)
            assert sorted(perm.tolist()) == list(range(n))
            assert not (perm == torch.arange(n)).any()


def test_contrastive_term_only_in_full_pvae():
    torch.manual_seed(0)
    model = build_model("pvae", NetConfig(audio_dim=3, image_size=8, hidden=6, latent_dim=2, image_channels=(2, 2)))
    x, lengths = pad_batch([np.random.rand(4, 3), np.random.rand(2, 3), np.random.rand(3, 3)])
    batch = {"audio": x, "audio_lengths": lengths, "image": torch.rand(3, 8, 8)}
    _, with_c = objective(model, batch, Weights(coherence=1.0, contrastive=10.0), torch.Generator().manual_seed(0))
    _, without = objective(model, batch, Weights(coherence=1.0, contrastive=0.0), torch.Generator().manual_seed(0))
    assert "contrastive" in with_c and "contrastive" not in without
    assert {"coh_audio", "coh_image"} <= set(without)


def test_normalised_hsic_separates_independent_from_dependent_latents():
    g = torch.Generator().manual_seed(0)
    independent = [normalised_hsic(torch.randn(32, 32, generator=g), torch.randn(32, 9, generator=g)).item()
                   for _ in range(20)]
    assert abs(np.mean(independent)) < 0.03 and max(independent) < 0.2
    x = torch.randn(32, 32, generator=g)
    assert normalised_hsic(x, x).item() == pytest.approx(1.0)
    digit = torch.randint(0, 10, (32,), generator=g)
    z_s = 3 * torch.randn(10, 32, generator=g)[digit] + 0.3 * torch.randn(32, 32, generator=g)
    z_i_with_digit = torch.randn(10, 9, generator=g)[digit] + torch.randn(32, 9, generator=g)
    assert normalised_hsic(z_s, z_i_with_digit).item() > 0.3
    with pytest.raises(ValueError, match="at least 4"):
        normalised_hsic(x[:3], x[:3])


def test_independence_term_moves_only_z_i_and_needs_a_pvae():
    torch.manual_seed(0)
    net = NetConfig(audio_dim=3, image_size=8, hidden=6, latent_dim=2, image_channels=(2, 2))
    model = build_model("pvae", net)
    x, lengths = pad_batch([np.random.rand(4, 3), np.random.rand(2, 3), np.random.rand(3, 3), np.random.rand(4, 3),
                            np.random.rand(2, 3)])
    batch = {"audio": x, "audio_lengths": lengths, "image": torch.rand(5, 8, 8)}
    base, logs0 = objective(model, batch, Weights(coherence=1.0), torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    with_term, logs = objective(model, batch, Weights(coherence=1.0, zi_independence=100.0), torch.Generator().manual_seed(0))
    assert "nhsic_s_i" in logs and "nhsic_s_i" not in logs0
    torch.manual_seed(1)
    plain, _ = objective(model, batch, Weights(coherence=1.0), torch.Generator().manual_seed(0))
    assert (with_term - plain).item() == pytest.approx(100.0 * logs["nhsic_s_i"], rel=1e-4, abs=1e-4)
    # The term's gradient reaches the z_i heads but not the z_s heads (mu_s is detached).
    def head_grads(loss):
        model.zero_grad()
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if ".heads.s." in n or ".heads.i." in n}
    g_with, g_plain = head_grads(with_term), head_grads(plain)
    for name in g_with:
        same = torch.allclose(g_with[name], g_plain[name], rtol=1e-5, atol=1e-7)
        assert same if ".heads.s." in name else True, name
    assert any(not torch.allclose(g_with[n], g_plain[n]) for n in g_with if ".heads.i." in n)
    jmvae = build_model("jmvae", net)
    with pytest.raises(ValueError, match="independence term"):
        objective(jmvae, batch, Weights(coherence=1.0, zi_independence=1.0), torch.Generator().manual_seed(0))


# -- variable-length sequences ------------------------------------------------------------------------
def test_padding_does_not_change_lstm_encodings_or_decoded_frames():
    torch.manual_seed(0)
    enc = LSTMEncoder(5, 7)
    seqs = [np.random.randn(t, 5).astype(np.float32) for t in (3, 9, 1, 6)]
    x, lengths = pad_batch(seqs)
    batched = enc(x, lengths)
    for i, s in enumerate(seqs):
        alone = enc(torch.as_tensor(s)[None], torch.tensor([len(s)]))
        assert torch.allclose(batched[i], alone[0], atol=1e-6)
    # Extra padding (a longer batch) changes nothing either.
    wide = torch.cat([x, torch.full((4, 5, 5), 9.0)], dim=1)
    assert torch.allclose(enc(wide, lengths), batched, atol=1e-6)
    dec = LSTMFrameDecoder(4, 6, 3)
    cond = torch.randn(4, 4)
    frames = dec(cond, lengths)
    for i in range(4):
        alone = dec(cond[i:i + 1], lengths[i:i + 1])
        assert torch.allclose(frames[i, :lengths[i]], alone[0], atol=1e-6)
        assert (frames[i, lengths[i]:] == 0).all()


def test_unimodal_audio_posterior_is_batch_independent():
    torch.manual_seed(1)
    model = build_model("pvae", NetConfig(audio_dim=4, image_size=8, hidden=8, latent_dim=3, image_channels=(2, 2)))
    seqs = [np.random.randn(t, 4) for t in (12, 2, 5)]
    x, lengths = pad_batch(seqs)
    together = model.infer_unimodal(AUDIO, {"audio": x, "audio_lengths": lengths})
    for i, s in enumerate(seqs):
        xi, li = pad_batch([s])
        alone = model.infer_unimodal(AUDIO, {"audio": xi, "audio_lengths": li})
        for name in ("s", "a"):
            assert torch.allclose(together[name][0][i], alone[name][0][0], atol=1e-6)


def test_lengths_that_do_not_fit_the_batch_are_refused():
    with pytest.raises(ValueError, match="lengths"):
        LSTMEncoder(2, 3)(torch.zeros(2, 4, 2), torch.tensor([5, 1]))


# -- energy VAD -------------------------------------------------------------------------------------
def test_vad_trims_leading_and_trailing_silence_only():
    quiet, loud = np.full(8, -20.0), np.full(8, 5.0)
    frames = np.stack([quiet] * 4 + [loud] * 3 + [quiet] + [loud] * 2 + [quiet] * 5)  # 15 frames
    # Energy is log(sum exp): 8 bins of value v -> v + ln 8; the quiet frames are 25 nats = 108.6 dB down.
    assert frame_log_energy(frames)[0] == pytest.approx(-20 + math.log(8))
    assert speech_mask(frames, threshold_db=40).tolist() == [False] * 4 + [True] * 3 + [False] + [True] * 2 + [False] * 5
    trimmed = trim_silence(frames, threshold_db=40, context_frames=0)
    assert len(trimmed) == 6 and (trimmed[3] == quiet).all()  # the pause inside the word stays
    assert len(trim_silence(frames, threshold_db=40, context_frames=2)) == 10
    assert len(trim_silence(frames, threshold_db=40, context_frames=0, min_frames=9)) == 9
    # A 200 dB threshold keeps everything.
    assert len(trim_silence(frames, threshold_db=200, context_frames=0)) == 15


# -- tiny end-to-end data -----------------------------------------------------------------------------
@pytest.fixture()
def tiny(tmp_path, monkeypatch):
    """Digit-coded 8x8 images and 6-bin log-mel 'utterances' with silent edges; 10 classes."""
    monkeypatch.chdir(tmp_path)
    return tiny_pvae(tmp_path, epochs=3, lr=1e-2, val_every=1, inertia_max_k=12, cpu_profile={"train": {"epochs": 2}},
                     models={"vae-sp": {"kind": "vae", "modality": "audio"}, "vae-im": {"kind": "vae", "modality": "image"},
                             "jmvae-kl": {"kind": "jmvae"}, "pvae-nocontrast": {"kind": "pvae", "contrastive_weight": 0.0},
                             "pvae": {"kind": "pvae", "contrastive_weight": 5.0, "kernel_gamma": 0.5, "margin": 0.5},
                             "pvae-independence": {"kind": "pvae", "contrastive_weight": 5.0, "kernel_gamma": 0.5,
                                                   "margin": 0.5, "zi_independence_weight": 10.0}})


def test_data_trims_silence_and_normalises_with_train_statistics(tiny):
    data = DigitData(load_run_config(tiny, "pvae").data)
    assert all(len(a) == len(data.audio_store[i]) - 4 for i, a in enumerate(data.audio))  # 2 silent frames each side
    train = data.split(AUDIO, "train")
    x, lengths = data.audio_batch(train)
    real = x[torch.arange(x.shape[1])[None, :] < lengths[:, None]]
    assert real.mean(0).abs().max() < 1e-4 and (real.std(0) - 1).abs().max() < 1e-2


def test_profile_and_model_entries_are_merged(tiny):
    cfg = load_run_config(tiny, "pvae")
    assert cfg.train.epochs == 2 and cfg.model.weights.contrastive == 5.0
    assert load_run_config(tiny, "pvae", profile="paper").train.epochs == 3
    assert load_run_config(tiny, "jmvae-kl").model.weights.contrastive == 0.0


def test_killed_training_resumes_to_identical_weights(tiny, tmp_path):
    cfg = load_run_config(tiny, "pvae")
    data = DigitData(cfg.data)
    reference = train_run(cfg, tmp_path / "ref", data=data, progress=False)
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, tmp_path / "killed", data=data, progress=False, stop_after_steps=7)  # mid epoch 2
    ck = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")
    assert not ck["finished"] and ck["epoch"] == 1
    resumed = train_run(cfg, tmp_path / "killed", data=data, progress=False)
    assert resumed["resumed"] and reference["steps"] == resumed["steps"] == 10
    a, _ = load_trained(tmp_path / "ref")
    b, _ = load_trained(tmp_path / "killed")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name
    # A finished run is never reused (DVC re-runs training only when something changed or when
    # forced): it trains again from scratch, to the same weights.
    train_run(cfg, tmp_path / "ref", data=data, progress=False)
    c, _ = load_trained(tmp_path / "ref")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))
    log = [json.loads(l) for l in (tmp_path / "ref" / "train_log.jsonl").read_text().splitlines()]
    assert any("val_purity_audio_s" in r for r in log)


def test_batches_are_sorted_by_length_but_cover_the_epoch(tiny):
    cfg = load_run_config(tiny, "pvae")
    task = PVAETask(cfg, DigitData(cfg.data))
    task.start_epoch(0)
    assert len(set(task.order.tolist())) == len(task.order) == task.num_batches(0) * cfg.train.batch_size
    order_again = task.order.copy()
    task.start_epoch(0)
    assert (task.order == order_again).all()


def test_pipeline_stages_on_tiny_data(tiny, tmp_path):
    """train -> export -> evaluate -> generate -> report through the stage driver (stages/run.py)."""
    import importlib.util
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("stage_driver", repo / "stages" / "run.py")
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)

    def stage(*args):
        driver.main(["pvae2018", *args])

    for model in ("vae-sp", "vae-im", "jmvae-kl", "pvae-nocontrast", "pvae", "pvae-independence"):
        stage("train", model, "--no-progress")
        stage("export", model)
        stage("evaluate", model)
    stage("generate")
    stage("report")
    res = tmp_path / "results" / "pvae2018"
    rows = (res / "table1.csv").read_text().splitlines()
    assert rows[0].startswith("model,latent_speech,latent_image,purity_speech_paper,purity_speech_ours")
    assert len(rows) == 10 and "fsdd (2 speakers) + MNIST".lower() in rows[1].lower()
    assert rows[1].split(",")[3] == "0.4573"                     # the paper's VAE-sp speech value
    assert rows[1].split(",")[5] == ""                           # VAE-sp has no image latent
    extra = rows[9].split(",")                                  # our diagnostic model, after Table 1's rows
    assert extra[0].startswith("PVAE + z_i independence") and extra[1:4] == ["z_a", "z_i", "not in paper"]
    assert float(extra[4]) >= 0
    for name in ("figure3_inertia.png", "tsne_z_s.png", "tsne_z_a.png", "tsne_z_i.png", "report.md",
                 "metrics.json", "figure4_style_image.png", "figure4_style_speech.png",
                 "figure5_speech_to_image.png", "figure5_image_to_speech.png"):
        assert (res / name).stat().st_size > 0, name
    details = json.loads((res / "details.json").read_text())
    assert [c["rule"] for c in details["claims"]] == ["ours >= 0.97", "ours >= 0.97", "ours <= 0.35", "ours <= 0.35",
                                                      "PVAE > PVAE (no contrastive)"]
    assert all(c["verdict"] in ("holds", "does not hold") for c in details["claims"])
    metrics = json.loads((res / "metrics.json").read_text())
    assert set(metrics["pvae"]) == {"purity_speech_z_s", "purity_image_z_s", "purity_speech_z_a", "purity_image_z_i"}
    assert set(metrics["claims"]) == {"1_pvae_z_s_speech", "2_pvae_z_s_image", "3_pvae_z_a_speech",
                                      "4_pvae_z_i_image", "5_contrastive_term_improves_speech"}
    text = (res / "report.md").read_text()
    assert "## Targets (default profile)" in text and "| 5. Contrastive term improves speech z_s purity |" in text
    ev = json.loads((tmp_path / "data" / "eval" / "pvae2018" / "pvae.json").read_text())
    assert set(ev["purity"]["test"]["audio"]) == {"z_s", "z_a"} and set(ev["purity"]["test"]["image"]) == {"z_s", "z_i"}
    assert len(ev["inertia"]["audio"]) == 12
    from vgs.store.embeddings import read_embeddings
    emb = read_embeddings(tmp_path / "data" / "embeddings" / "pvae2018" / "jmvae-kl" / "test.h5")
    assert emb["audio"]["z_mean"].shape == (30, 9) and emb["image"]["z_mean"].shape == (30, 9)


def test_targets_are_claims_with_the_paper_value_and_the_old_rules():
    from vgs.methods.pvae2018.report import check_targets

    def evals(zs_a, zs_i, za, zi, ablation):
        return {"pvae": {"purity": {"test": {"audio": {"z_s": zs_a, "z_a": za}, "image": {"z_s": zs_i, "z_i": zi}}}},
                "pvae-nocontrast": {"purity": {"test": {"audio": {"z_s": ablation}}}}}

    claims = check_targets(evals(0.97, 0.99, 0.35, 0.36, 0.97))
    assert [c.verdict for c in claims] == ["holds", "holds", "holds", "does not hold", "does not hold"]
    assert claims[0].paper == "0.9977 (TIDIGIT-MNIST)" and claims[3].ours == "0.3600"
    assert claims[4].ours == "0.9700 vs 0.9700"
    # A purity that is missing fails its target, as the old `met` did.
    missing = check_targets({})
    assert [c.verdict for c in missing] == ["does not hold"] * 5 and missing[0].ours == "n/a"


def test_input_sizes_come_from_the_stores_and_a_mismatch_names_both(tiny):
    from dataclasses import replace

    from vgs.errors import ParamError
    cfg = load_run_config(tiny, "pvae")
    assert (cfg.net.audio_dim, cfg.net.image_size) == (6, 8)       # the stores' dim and item_shape
    data = DigitData(cfg.data)
    checkpoint_net = replace(cfg.net, audio_dim=7)
    with pytest.raises(ParamError, match=r"the checkpoint of run-x has net.audio_dim = 7, "
                                         r"but pvae2018.data.audio_store data/aud.zarr holds inputs of size 6"):
        data.require_input_sizes(checkpoint_net, "the checkpoint of run-x")
    with pytest.raises(ParamError, match=r"net.image_size = 12, .*image_store data/img.zarr .* size 8"):
        PVAETask(replace(cfg, net=replace(cfg.net, image_size=12)), data)
    write_tiny_store("data/wide.zarr", [(f"wide-{i}", np.zeros((8, 12), np.float32), i, "train", "") for i in range(2)],
                     "mnist", "image", (8, 12))
    tiny.data["pvae2018"]["data"]["image_store"] = "data/wide.zarr"
    with pytest.raises(ParamError, match=r"pvae2018.data.image_store data/wide.zarr holds 8x12 images"):
        load_run_config(tiny, "pvae")


def test_unknown_model_and_bad_settings_are_clear_errors(tiny):
    from vgs.errors import ParamError
    with pytest.raises(ParamError, match="pvae2018.models has no model 'pvea'"):
        load_run_config(tiny, "pvea")
    tiny.data["pvae2018"]["models"]["jmvae-kl"]["contrastive_weight"] = 1.0
    with pytest.raises(ParamError, match="contrastive_weight"):
        load_run_config(tiny, "jmvae-kl")
    tiny.data["pvae2018"]["models"]["jmvae-kl"]["contrastive_weight"] = 0.0
    tiny.data["pvae2018"]["models"]["jmvae-kl"]["zi_independence_weight"] = 1.0
    with pytest.raises(ParamError, match="zi_independence_weight"):
        load_run_config(tiny, "jmvae-kl")
    tiny.data["pvae2018"]["eval"]["purity_splits"] = ["dev"]
    with pytest.raises(ParamError, match="purity_splits"):
        load_eval_config(tiny)
