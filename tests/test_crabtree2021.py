"""Crabtree 2021: run configs and bad params, the multiview pair lists the trainer contrasts, the
learning-rate schedule, language-embedding shapes of the shared encoder, and a tiny end-to-end run
on a 4-view store (train, export, evaluate, report) with resume after a kill to identical weights.
The losses against brute force, the poolings' padding invariance and the encoders themselves are
tested with the shared blocks (tests/test_retrieval_losses.py, tests/test_crabtree_encoders.py)."""
import csv
import json
import math

import numpy as np
import pytest
import torch

from tiny_runs import CRABTREE_SPEECH_WIDTHS, CRABTREE_VIEWS as VIEWS, crabtree_params, write_crabtree_pairs
from vgs.errors import CheckpointError, ParamError
from vgs.methods.crabtree2021.config import load_run_config, report_settings, run_names
from vgs.methods.crabtree2021.evaluate import evaluate_run
from vgs.methods.crabtree2021.export import export_run
from vgs.methods.crabtree2021.model import InputSizes, build_model, count_structure, input_sizes
from vgs.methods.crabtree2021.paper import PAPER, parse_label
from vgs.methods.crabtree2021.report import HEADLINE_LIMIT, build_report, check_findings, write_report
from vgs.methods.crabtree2021.train import (CrabtreeTask, batch_loss, load_views, make_scheduler, pair_names,
                                            train_run)
from vgs.nn.retrieval_losses import info_nce
from vgs.pairing.batch_loader import LoaderSettings
from vgs.params import Params
from vgs.report.metrics import flatten_headline


def _params(runs: dict | None = None, pairs: str = "pairs.zarr", **shared) -> Params:
    return crabtree_params(pairs, runs, report={"tsne_scenes": 10}, **shared)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 4-view instance pair store (image, en, hi, ja; 40 log-mel bins) of 8/10/10 datapoints."""
    return write_crabtree_pairs(tmp_path_factory.mktemp("crabtree"))


# -- configuration ---------------------------------------------------------------------------------
def test_runs_override_shared_keys_and_bad_params_are_named():
    p = _params()
    names = run_names(p)
    assert len(names) == 25 and names[0] == "baseline" and names[-1] == "image-scratch"   # 24 of the thesis
    base = load_run_config(p, "baseline")
    assert (base.loss.name, base.model.pooling, base.train.scheme, base.model.encoders) == \
        ("infonce", "avg", "full_graph", "separate")
    assert base.train.batch_size == 4 and base.model.embedding_norm is None
    seed2 = load_run_config(p, "baseline-seed2")
    assert seed2.seed != base.seed and seed2.config_without_seed() == base.config_without_seed()
    h = load_run_config(p, "hsphere-u075")
    assert h.loss.name == "hyperspheric" and h.loss.params["lambda_unif"] == 0.75 and h.model.embedding_norm == 1.0
    m = load_run_config(p, "mhsa-lr4-drop3")
    assert (m.model.pooling, m.model.dropout, m.train.lr) == ("mhsa", 0.3, 1e-4)
    assert load_run_config(p, "shared-chan").model.language_conditioning == "chan"
    assert load_run_config(p, "contrast-others").train.scheme == "contrast_others"
    # The cpu profile starts the image trunk from the pretraining stage; image-scratch does not.
    cpu = crabtree_params("pairs.zarr")
    cpu_raw = cpu.to_dict()
    cpu_raw["crabtree2021"]["profiles"]["cpu"] = {"model": {"image_init": "pretrained"}}
    cpu = Params(cpu_raw, "", "test params")
    assert load_run_config(cpu, "baseline").model.image_init == "pretrained"
    assert load_run_config(cpu, "image-scratch").model.image_init == "scratch"
    assert report_settings(p)["noise_runs"] == ["baseline", "baseline-seed2", "baseline-seed3"]

    bad = {
        "loss": ({"x": {"loss": {"name": "cosface"}}}, r"runs\.x\.loss\.name"),
        "loss param": ({"x": {"loss": {"name": "mms", "margn": 1}}}, "margn"),
        "pooling": ({"x": {"model": {"pooling": "max"}}}, r"runs\.x\.model\.pooling"),
        "scheme": ({"x": {"train": {"scheme": "star"}}}, r"runs\.x\.train\.scheme"),
        "conditioning without sharing": ({"x": {"model": {"language_conditioning": "seq"}}}, "encoders: shared"),
        "conditioning name": ({"x": {"model": {"encoders": "shared", "language_conditioning": "token"}}},
                              "language_conditioning"),
        "run key": ({"x": {"epochs": 3}}, r"runs\.x\.epochs"),
        "model key": ({"x": {"model": {"widths": [1]}}}, r"runs\.x\.model\.widths"),
        "heads": ({"x": {"model": {"pooling": "mhsa", "embed_dim": 12}}}, "8 attention heads"),
        "widths": ({"x": {"model": {"speech_widths": [8, 8]}}}, "speech_widths"),
        "image init": ({"x": {"model": {"image_init": "imagenet"}}}, r"runs\.x\.model\.image_init"),
    }
    for what, (runs, match) in bad.items():
        with pytest.raises(ParamError, match=match):
            load_run_config(_params(runs), "x")
    with pytest.raises(ParamError, match="runs.nope is missing"):
        load_run_config(p, "nope")
    with pytest.raises(ParamError, match="noise_runs"):
        report_settings(_params({"baseline": {}}))


def test_a_view_the_pair_store_lacks_is_a_param_error(tiny):
    cfg = load_run_config(_params(pairs=tiny, data={"caption_views": ["en", "de"]}), "baseline")
    with pytest.raises(ParamError, match=r"caption_views names view\(s\) \['de'\]"):
        load_views(cfg)


def test_encoder_input_sizes_come_from_the_stores_and_a_disagreeing_param_is_named(tiny):
    cfg = load_run_config(_params(pairs=tiny), "baseline")
    assert input_sizes(cfg) == InputSizes(mel_bins=40, image_channels=1)
    model = build_model(cfg.model, cfg.data.caption_views, input_sizes(cfg))
    assert model.speech["en"].in_bins == 40 and model.image.in_channels == 1
    rgb = load_run_config(_params(pairs=tiny, model={"in_channels": 3}), "baseline")
    with pytest.raises(ParamError, match=r"model\.in_channels = 3 .*image store .* holds 1-channel images"):
        input_sizes(rgb)


def test_multiview_pair_lists_per_scheme_as_the_trainer_contrasts_them(tiny):
    assert pair_names(VIEWS, "full_graph") == [("image", "en"), ("image", "hi"), ("image", "ja"), ("en", "hi"),
                                               ("en", "ja"), ("hi", "ja")]
    assert pair_names(VIEWS, "image_anchor") == [("image", "en"), ("image", "hi"), ("image", "ja")]
    assert pair_names(VIEWS, "average_anchor") == [(v, "mean(image,en,hi,ja)") for v in VIEWS]
    assert pair_names(VIEWS, "contrast_others") == [
        ("image", "mean(en,hi,ja)"), ("en", "mean(image,hi,ja)"), ("hi", "mean(image,en,ja)"), ("ja", "mean(image,en,hi)")]
    # The trainer's batch loss is the mean of the pair loss over exactly these pairs.
    for scheme in ("full_graph", "image_anchor", "average_anchor", "contrast_others"):
        cfg = load_run_config(_params({"x": {"train": {"scheme": scheme}}}, pairs=tiny), "x")
        views = load_views(cfg)
        task = CrabtreeTask(cfg, views)
        task.model.eval()
        rows = task.train_tuples[:4]
        with torch.no_grad():
            got = batch_loss(task.model, cfg, views, rows, step=0)
            emb = {"image": task.model.embed_images(views.images(rows[:, 0]))}
            for k, lang in enumerate(VIEWS[1:], start=1):
                cap = views.captions(lang, rows[:, k])
                emb[lang] = task.model.embed_captions(lang, cap.frames, cap.lengths)

        def side(name):
            if name in emb:
                return emb[name]
            return torch.stack([emb[v] for v in name[5:-1].split(",")]).mean(0)

        want = torch.stack([info_nce(side(a), side(b)) for a, b in pair_names(VIEWS, scheme)]).mean()
        assert torch.allclose(got, want, atol=1e-5), scheme


def test_learning_rate_warms_up_over_ten_percent_then_decays_every_50_steps():
    cfg = load_run_config(_params(), "baseline")
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.train.lr)
    sched = make_scheduler(opt, cfg, total_steps=1000)
    assert isinstance(sched, torch.optim.lr_scheduler.LambdaLR)
    lrs = []
    for _ in range(250):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    lr = cfg.train.lr
    assert math.isclose(lrs[0], lr / 100) and math.isclose(lrs[49], lr / 2) and math.isclose(lrs[99], lr)
    assert math.isclose(lrs[149], lr) and math.isclose(lrs[150], 0.99 * lr) and math.isclose(lrs[249], 0.99 ** 2 * lr)


def test_shared_encoder_language_embeddings_have_the_thesis_shapes():
    widths = CRABTREE_SPEECH_WIDTHS
    langs = ["en", "hi", "ja"]
    base = load_run_config(_params(), "baseline").model
    sizes = InputSizes(mel_bins=40, image_channels=1)
    models = {c: build_model(load_run_config(_params({"x": {"model": {"encoders": "shared",
                                                                       "language_conditioning": c}}}), "x").model,
                             langs, sizes)
              for c in ("basic", "input", "seq", "chan")}
    for c in ("input", "seq", "chan"):
        s = models[c].speech
        assert tuple(s.input_language.weight.shape) == (3, 8)          # 3 languages x 8 dims
        assert s.stem_conv.in_channels == 40 + 8                          # appended to the 40 log-mel bins
    assert models["input"].speech.layer_language is None and models["basic"].speech.input_language is None
    for c in ("seq", "chan"):
        layers = models[c].speech.layer_language
        assert len(layers) == 3 and all(tuple(e.weight.shape) == (3, 8) for e in layers)   # between the 4 layers
    chan, seq = models["chan"].speech, models["seq"].speech
    assert [layer[0].conv1.in_channels for layer in chan.layers] == [widths[0], widths[1] + 8, widths[2] + 8,
                                                                     widths[3] + 8]
    assert [layer[0].conv1.in_channels for layer in seq.layers] == widths[:4]
    g = torch.Generator().manual_seed(0)
    frames, lengths = torch.randn(3, 50, 40, generator=g), torch.tensor([50, 31, 17])
    for c, m in models.items():
        m.eval()
        with torch.no_grad():
            out = {lang: m.embed_captions(lang, frames, lengths) for lang in langs}
        assert all(tuple(o.shape) == (3, 16) for o in out.values())
        same = torch.allclose(out["en"], out["hi"])
        assert same == (c == "basic"), c                                  # the language id matters unless basic
    counts = {c: m.parameter_counts()["speech"] for c, m in models.items()}
    separate = build_model(base, langs, sizes).parameter_counts()["speech"]
    assert separate == 3 * counts["basic"] and counts["chan"] > counts["seq"] > counts["basic"]
    assert counts["seq"] - counts["basic"] == 3 * 8 + 8 * widths[0] + 3 * 3 * 8
    assert count_structure(base, langs, sizes) == build_model(base, langs, sizes).parameter_counts()


def test_paper_values_are_parsed_from_the_thesis_text():
    assert parse_label("E&I.avgR10") == ("image-en", 10) and parse_label("Jap.&Hin._r5") == ("hi-ja", 5)
    assert parse_label("hin&eng_r1") == ("en-hi", 1) and parse_label("Best Epoch") is None
    assert PAPER["table3_3"]["cells"]["baseline"][("image-ja", 10)] == pytest.approx(0.7235)
    assert PAPER["table3_3"]["best_epoch"]["baseline"] == 26 and PAPER["table3_1"]["best_epoch"]["hsphere-u075"] is None
    assert ("en-hi", 1) not in PAPER["table3_6"]["cells"]["transformer"]          # omitted by the thesis
    assert sum(len(c) for t in PAPER.values() for c in t["cells"].values()) == 36 * 2 + 108 + 36 * 2 + 27 + 36 * 2 + 72


# -- end to end ------------------------------------------------------------------------------------
def _weights(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["task"]["model"]


def test_resume_after_a_kill_gives_identical_weights(tiny, tmp_path):
    # Dropout (MHSA) and random imposters (triplet) both draw random numbers: the resume must replay them.
    cfg = load_run_config(_params({"x": {"loss": {"name": "triplet"}, "model": {"pooling": "mhsa"}}}, pairs=tiny), "x")
    views = load_views(cfg)
    ref = train_run(cfg, views, progress=False, run_dir=tmp_path / "ref")
    assert ref["steps"] == 2 * 2   # 8 train datapoints, batch 4, 2 epochs
    # The killed run streams its batches through two reading processes: the weights must not notice.
    streaming = LoaderSettings(in_memory=False, num_workers=2)
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, progress=False, stop_after_steps=3, run_dir=tmp_path / "killed", loading=streaming)
    with pytest.raises(CheckpointError, match="unfinished"):
        export_run(cfg, out_dir=tmp_path / "x", run_dir=tmp_path / "killed", views=views)
    resumed = train_run(cfg, progress=False, run_dir=tmp_path / "killed", loading=streaming)
    assert resumed["resumed"]
    a, b = _weights(tmp_path / "ref"), _weights(tmp_path / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["epoch"] for h in resumed["task"].history] == [1, 2]


def test_tiny_runs_end_to_end(tiny, tmp_path):
    runs = {"baseline": {}, "baseline-seed2": {"seed": 7},
            "hsphere-u075": {"loss": {"name": "hyperspheric", "lambda_unif": 0.75}},
            "hsphere-u100": {"loss": {"name": "hyperspheric", "lambda_unif": 1.0}},
            "mms-sched": {"loss": {"name": "mms_scheduled"}},
            "mhsa-lr4-drop1": {"model": {"pooling": "mhsa"}, "train": {"lr": 1e-4}},
            "image-anchor": {"train": {"scheme": "image_anchor"}},
            "shared-chan": {"model": {"encoders": "shared", "language_conditioning": "chan"}}}
    p = _params(runs, pairs=tiny)
    configs = [load_run_config(p, run) for run in runs]
    views = load_views(configs[0])
    for cfg in configs:
        train_run(cfg, views, progress=False, run_dir=tmp_path / "models" / cfg.run)
        export_run(cfg, out_dir=tmp_path / "emb" / cfg.run, run_dir=tmp_path / "models" / cfg.run, views=views)
        result = evaluate_run(cfg, in_dir=tmp_path / "emb" / cfg.run, out_path=tmp_path / "eval" / f"{cfg.run}.json")
        assert result["test_pairs"] == 10 and set(result["recall"]) == {"image-en", "image-hi", "image-ja", "en-hi",
                                                                       "en-ja", "hi-ja"}
        assert all(v is None for v in result["oracle"].values())           # no scene labels in the tiny corpus
        assert result["recall"]["en-hi"]["a2b_R10"] == 1.0                  # 10 candidates, k = 10
        assert result["best_epoch"] in (1, 2) and [h["epoch"] for h in result["history"]] == [1, 2]

    settings = {**report_settings(_params(pairs=tiny)), "noise_runs": ["baseline", "baseline-seed2"]}
    res = tmp_path / "results"
    report = build_report(configs, settings, out_dir=res, eval_dir=tmp_path / "eval",
                          emb_dir=tmp_path / "emb", paper_configs={"shared-chan": configs[-1]})
    written = write_report(report, res)
    chosen = report.details["chosen_hyperspheric"]
    assert chosen in ("hsphere-u075", "hsphere-u100") and report.details["noise_floor"] is not None
    assert {"table3_3.csv", "runs.csv", "validation.csv", "table3_3_bars.csv", "report.md"} <= set(written)
    t33 = (res / "table3_3.csv").read_text().splitlines()
    assert t33[0].startswith("metric,") and f"{chosen}_ours" in t33[0]
    assert t33[1].startswith("Best Epoch,") and ",26," in t33[1]             # the thesis's InfoNCE best epoch
    assert any(line.startswith("image-ja avgR10,") and ",72.35," in line for line in t33)
    assert "tiny test corpus" in t33[2]
    t51 = (res / "table5_1.csv").read_text()
    assert "speech parameters at paper scale" in t51 and "total parameters" in t51
    # The headline is runs.csv's two summary columns as printed, one entry per configuration (the
    # baseline's extra seed only in the noise floor), plus the renderer's 1/0 per finding, and passes
    # the shared headline check.
    metrics = json.loads((res / "metrics.json").read_text())
    flatten_headline(metrics, HEADLINE_LIMIT)
    with open(res / "runs.csv", newline="") as f:
        runs_csv = {r["run"]: r for r in csv.DictReader(f)}
    assert set(metrics) == (set(runs_csv) - {"baseline-seed2"}) | {"noise_floor", "claims"}
    for run, m in metrics.items():
        if run not in ("noise_floor", "claims"):
            assert m == {c: float(runs_csv[run][c]) for c in ("image_avgR10", "crosslingual_avgR10")}
    assert set(metrics["noise_floor"]) == {f"{g}_avgR10_{s}" for g in ("image", "crosslingual") for s in ("mean", "std")}
    details = json.loads((res / "details.json").read_text())
    assert len(details["claims"]) == 6 - 1           # finding 5 needs all four schemes' runs
    assert all(c["verdict"] in ("holds", "does not hold", "within noise", "untested") and c["evidence"]
               and c["paper"] for c in details["claims"])
    verdicts = [c["verdict"] for c in details["claims"]]
    assert list(metrics["claims"].values()) == [int(v == "holds") for v in verdicts]
    text = (res / "report.md").read_text()
    assert "## The thesis's findings beside ours" in text and "| claim | paper | ours | rule | verdict |" in text
    assert "## Noise floor" in text and "n/a" in text and "Table 3.3" in text and "picked its epochs on test" in text
    for name in ("validation_table3_3.png", "table3_3_bars.png", "tsne.png", "tsne_views.png", "validation.csv",
                 "table3_3_bars.csv", "runs.csv"):
        assert (res / name).stat().st_size > 0, name


def test_findings_follow_the_shared_rule_with_untested_runs_and_the_oracle():
    """Synthetic evaluations with known answers: a clear difference holds, one inside the seeds' noise
    does not count, a configuration that never left chance is untested, and finding 3 compares each
    direction's share of its oracle (equal shares: not harder)."""
    def ev_of(image, cross, learned=True):
        val = 0.05 if learned else 0.011
        return {"summary": {"image": image, "crosslingual": cross, "all": (image + cross) / 2},
                "history": [{"epoch": 1, "val_avgR10": val}], "best_epoch": 1}

    seeds = [(0.30, 0.15), (0.31, 0.155), (0.29, 0.145)]
    ev = {"baseline": ev_of(*seeds[0]), "baseline-seed2": ev_of(*seeds[1]), "baseline-seed3": ev_of(*seeds[2]),
          "mms-m1": ev_of(0.10, 0.05), "shared-basic": ev_of(0.05, 0.02), "shared-seq": ev_of(0.30, 0.15, learned=False)}
    noise = {"runs": ["baseline", "baseline-seed2", "baseline-seed3"], "seeds": [1, 2, 3],
             "summary": {g: {"values": v, "mean": float(np.mean(v)), "std": float(np.std(v, ddof=1))}
                         for g, v in (("image", [s[0] for s in seeds]), ("crosslingual", [s[1] for s in seeds]),
                                      ("all", [(a + b) / 2 for a, b in seeds]))}}
    findings = {f.claim.name[:2]: f for f in check_findings(ev, noise, None, chance=0.01,
                                                            oracle={"image": 1.0, "crosslingual": 0.5})}
    # 2: InfoNCE far above the other objective (one seed of mms-m1) -> holds, the interval as evidence.
    assert findings["2."].claim.verdict == "holds" and "prediction interval" in findings["2."].claim.evidence
    assert findings["2."].rests_on_one_seed
    # 3: cross-lingual reaches the same share of its (lower) oracle -> not harder: within noise.
    assert findings["3."].claim.verdict == "within noise"
    # 6: shared-seq never reached twice chance on validation -> the finding is untested, never "does not hold".
    six = findings["6."].claim
    assert six.verdict == "untested" and "never reached twice chance" in six.evidence


# -- image-trunk pretraining (the CPU analogue of ImageNet initialisation) ---------------------------------
def _digit_store(path) -> str:
    """A labelled store of 28x28 'digits' (class k lights row band k), 4 per class in train, 2 in val."""
    from tiny_stores import write_tiny_store
    rng = np.random.default_rng(3)
    items = []
    for split, n in (("train", 4), ("val", 2)):
        for label in range(10):
            for k in range(n):
                img = rng.uniform(0, 0.1, (28, 28)).astype(np.float32)
                img[2 * label:2 * label + 3, 4:24] = 1.0
                items.append((f"d-{split}-{label}-{k}", img, label, split, ""))
    write_tiny_store(str(path), items, "mnist", "image", item_shape=(28, 28))
    return str(path)


def test_pretrained_trunk_starts_every_run_and_scratch_writes_only_a_note(tiny, tmp_path, monkeypatch):
    from vgs.errors import StoreError
    from vgs.methods.crabtree2021 import pretrain as P
    monkeypatch.chdir(tmp_path)
    digits = _digit_store(tmp_path / "digits.zarr")
    pre = {"images": digits, "steps": 3, "batch_size": 8, "lr": 1.0e-3, "canvas": 32, "seed": 5}

    # scratch: the stage says the trunk is unused and writes no weights; a pretrained run then names the fix.
    P.stage(_params(pairs=tiny, pretrain=pre), progress=False)
    note = json.loads((P.pretrain_dir() / P.SUMMARY_FILE).read_text())
    assert note["used"] is False and not (P.pretrain_dir() / P.TRUNK_FILE).exists()
    wants = _params({"x": {"model": {"image_init": "pretrained"}}}, pairs=tiny, pretrain=pre)
    with pytest.raises(StoreError, match="crabtree2021-pretrain/image_trunk.pt is missing") as err:
        CrabtreeTask(load_run_config(wants, "x"), load_views(load_run_config(wants, "x")))
    assert "dvc repro crabtree2021-pretrain" in err.value.hint

    params = _params({"x": {}, "y": {"seed": 9}, "s": {"model": {"image_init": "scratch"}}}, pairs=tiny,
                     model={"image_init": "pretrained"}, pretrain=pre)
    out = P.stage(params, progress=False)
    assert "held-out accuracy" in out
    summary = json.loads((P.pretrain_dir() / P.SUMMARY_FILE).read_text())
    assert summary["used"] and summary["train_images"] == 40 and summary["val_items"] == 20
    assert 0.0 <= summary["val_accuracy"] <= 1.0
    saved = torch.load(P.pretrain_dir() / P.TRUNK_FILE, weights_only=True)["trunk"]
    # Every pretrained run starts its trunk from the saved weights, whatever its seed; its embedding
    # conv stays the seed's own init, and a run that asks for scratch keeps its own trunk.
    tasks = {r: CrabtreeTask(load_run_config(params, r), load_views(load_run_config(params, r))) for r in "xys"}
    for r in "xy":
        trunk = tasks[r].model.image.trunk.state_dict()
        assert all(torch.equal(trunk[k], saved[k]) for k in saved)
    assert not torch.equal(tasks["x"].model.image.embed.weight, tasks["y"].model.image.embed.weight)
    assert not all(torch.equal(tasks["s"].model.image.trunk.state_dict()[k], saved[k]) for k in saved)
    # Same params, same trunk: the pretraining is seeded.
    first = {k: v.clone() for k, v in saved.items()}
    P.stage(params, progress=False)
    again = torch.load(P.pretrain_dir() / P.TRUNK_FILE, weights_only=True)["trunk"]
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_pretraining_refuses_what_cannot_start_the_runs(tiny, tmp_path, monkeypatch):
    from vgs.errors import StoreError
    from vgs.methods.crabtree2021 import pretrain as P
    monkeypatch.chdir(tmp_path)
    digits = _digit_store(tmp_path / "digits.zarr")
    pre = {"images": digits, "steps": 2, "batch_size": 4, "lr": 1.0e-3, "canvas": 32, "seed": 5}
    with pytest.raises(ParamError, match="in_channels = 3.*1 channel"):
        P.stage(_params(pairs=tiny, model={"image_init": "pretrained", "in_channels": 3}, pretrain=pre), progress=False)
    with pytest.raises(ParamError, match="canvas = 20 is smaller"):
        P.stage(_params(pairs=tiny, model={"image_init": "pretrained"}, pretrain={**pre, "canvas": 20}), progress=False)
    with pytest.raises(ParamError, match="image_init"):
        P.stage(_params(pairs=tiny, model={"image_init": "imagenet"}, pretrain=pre), progress=False)
    with pytest.raises(ParamError, match="crabtree2021.pretrain.epochs is not a key"):
        P.stage(_params(pairs=tiny, model={"image_init": "pretrained"}, pretrain={**pre, "epochs": 3}), progress=False)
    with pytest.raises(StoreError, match="does not exist"):
        P.stage(_params(pairs=tiny, model={"image_init": "pretrained"}, pretrain={**pre, "images": "nope.zarr"}),
                progress=False)
    assert not P.pretrain_dir().exists()          # nothing half-written by any refusal
    # A trunk pretrained for another structure is refused by name, not loaded into the wrong shapes.
    P.stage(_params(pairs=tiny, model={"image_init": "pretrained"}, pretrain=pre), progress=False)
    other = _params({"x": {"model": {"image_init": "pretrained", "image_net": "resnet50"}}}, pairs=tiny)
    cfg = load_run_config(other, "x")
    model = build_model(cfg.model, cfg.data.caption_views, InputSizes(image_channels=1, mel_bins=40))
    with pytest.raises(ParamError, match="holds a cpu trunk with 1 channel.*resnet50"):
        P.load_pretrained_trunk(model.image, "resnet50", 1)
