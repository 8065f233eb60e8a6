"""The Mortazavi 2020 report: Table 1 (parameter counts, exact), Table 2 (recall of the five encoder
pairs, trained from scratch), the schedule comparison, Figure 2 (validation R@10 per epoch), the
paper's four claims beside our numbers, metrics.json and report.md in results/mortazavi2020/.

Every recall value is read from data/eval/mortazavi2020/<run>.json (one per run); the paper's
R@10 values were lost from our copy of the text, so its columns read "n/a" and are never filled.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from vgs.errors import StoreError
from vgs.methods.mortazavi2020.config import METHOD, RunConfig, eval_path
from vgs.methods.mortazavi2020.model import build_pair
from vgs.nn.speech_rnn import PAPER_PAIRS, TABLE1_COUNTS, count_parameters, speech_embedder, image_embedder
from vgs.params import Params
from vgs.paths import results_dir
from vgs.report.metrics import table_number, write_results
from vgs.report.recall import (CHANCE_NOTE, oracle_note, plot_validation_curves, recall_cells, recall_columns)
from vgs.report.tables import hardware_summary, markdown_table, write_csv
from vgs.utils.atomic import atomic_write_text

DIRECTIONS = {"a2b": "i2s", "b2a": "s2i"}   # image-to-speech, speech-to-image
PAIR_RUNS = ("dg4a2048", "dg4a1024", "dg3a1024", "dg2a2048", "dg2a1024")
# (row name, run, phase): the restart is a second phase of the dg3a1024 run itself, so its first
# phase is plain CALR (Table 2's DG3A1024) and the whole run is CALR + restart.
SCHEDULE_ROWS = [("dg3a1024", "dg3a1024", "first", "CALR"),
                 ("dg3a1024-calwr", "dg3a1024-calwr", "all", "CALWR"),
                 ("dg3a1024-cylr", "dg3a1024-cylr", "all", "CYLR (the paper's CYLR)"),
                 ("dg3a1024-restart", "dg3a1024", "restart", "CALR + one warm restart from the best epoch at lr/2")]
LITTLE_LOSS = 0.05   # claim 3: "loses little" = at most 5 points of average R@10


def paper_name(run: str) -> str:
    return run.split("-")[0].upper()


def table1_rows(configs: list[RunConfig]) -> list[dict]:
    """Paper-scale counts of the five Table 1 structures (instantiated, not trained), then the
    counts of the models this profile trains."""
    rows = []
    for name, spec in PAPER_PAIRS.items():
        audio, image = count_parameters(speech_embedder(name)), count_parameters(image_embedder(name))
        paper_audio, paper_image = TABLE1_COUNTS[name]
        rows.append({"pair": name, "scale": "paper (DenseNet-264, RGB)", "G": spec.gru_layers, "d": spec.embed_dim,
                     "audio_params_paper": paper_audio, "audio_params_ours": audio,
                     "image_params_paper": paper_image, "image_params_ours": image,
                     "equal": audio == paper_audio and image == paper_image})
    for c in configs:
        if c.run not in PAIR_RUNS:
            continue
        counts = build_pair(c.model).parameter_counts()
        rows.append({"pair": paper_name(c.run), "scale": f"trained here ({c.profile} profile, {c.model.image_net}, "
                                                        f"{c.model.in_channels} channel)",
                     "G": c.model.gru_layers, "d": c.model.dim, "audio_params_paper": None,
                     "audio_params_ours": counts["audio"], "image_params_paper": None,
                     "image_params_ours": counts["image"], "equal": None})
    return rows


def load_evaluations(configs: list[RunConfig], eval_dir=None) -> dict[str, dict]:
    out = {}
    for c in configs:
        path = Path(eval_dir) / f"{c.run}.json" if eval_dir else eval_path(c.run)
        if not path.exists():
            raise StoreError(f"evaluation {path} is missing", hint=f"dvc repro {METHOD}-evaluate@{c.run}")
        out[c.run] = json.loads(path.read_text())
    return out


def _avg10(e: dict) -> float:
    return e["recall"]["avgR10"]


def first_phase(e: dict) -> dict:
    """A run's evaluation as it stood at the end of its first phase: the run itself when it has no
    warm restart; otherwise recall, chosen epoch and training time of its best CALR epoch."""
    base = e.get("base")
    if not base:
        return e
    timing = {**e["timing"], "train_wall_seconds": base["train_wall_seconds"] or e["timing"]["train_wall_seconds"]}
    return {**e, "recall": base["recall"], "best_epoch": base["best_epoch"], "best_phase": "base",
            "val_avgR10": base["val_avgR10"], "timing": timing}


def check_claims(ev: dict[str, dict]) -> list[dict]:
    """The paper's four claims, each with our numbers and yes/no."""
    claims = []
    full = ev
    ev = {run: first_phase(e) for run, e in ev.items()}   # claims 1-3 compare the pairs as Table 2 does
    n = next(iter(ev.values()))["test_pairs"]
    chance = 10 / n
    present = [r for r in PAIR_RUNS if r in ev]
    worst = min(present, key=lambda r: _avg10(ev[r])) if present else None
    if worst:
        claims.append({"claim": "1. From scratch, recall is far above chance",
                       "ours": f"lowest average R@10 of the five pairs: {_avg10(ev[worst]):.3f} ({paper_name(worst)}); "
                               f"chance {chance:.3f}",
                       "holds": _avg10(ev[worst]) >= 5 * chance, "rule": "at least 5x chance R@10"})
    if all(r in ev for r in ("dg3a1024", "dg4a1024", "dg2a1024")):
        g3, g4, g2 = (_avg10(ev[r]) for r in ("dg3a1024", "dg4a1024", "dg2a1024"))
        claims.append({"claim": "2. The mid-sized G3 pair beats the largest (G4) and smallest (G2) of the same width",
                       "ours": f"average R@10 at d={ev['dg3a1024']['dim']}: G3 {g3:.3f}, G4 {g4:.3f}, G2 {g2:.3f}",
                       "holds": g3 > g4 and g3 > g2, "rule": "G3 strictly above both"})
    if all(r in ev for r in ("dg2a1024", "dg4a2048")):
        small, large = _avg10(ev["dg2a1024"]), _avg10(ev["dg4a2048"])
        claims.append({"claim": "3. The smallest audio embedder (DG2A1024) loses little recall against the largest (DG4A2048)",
                       "ours": f"average R@10 {small:.3f} vs {large:.3f} (loss {large - small:+.3f})",
                       "holds": large - small <= LITTLE_LOSS, "rule": f"loss at most {LITTLE_LOSS:.2f}"})
    if "dg3a1024" in full and full["dg3a1024"].get("base"):
        base, restart = _avg10(ev["dg3a1024"]), _avg10(full["dg3a1024"])
        chosen = full["dg3a1024"]["best_phase"]
        claims.append({"claim": "4. A warm restart improves R@10 (the paper: +1.5 to +10 points)",
                       "ours": f"average test R@10 {base:.3f} (CALR) -> {restart:.3f} (with restart; the epoch chosen "
                               f"on validation is from the {chosen} phase)",
                       "holds": restart > base, "rule": "higher test R@10 after the restart"})
    return claims


def build_report(configs: list[RunConfig], out_dir=None, eval_dir=None) -> dict:
    started = time.perf_counter()
    out = Path(out_dir or results_dir(METHOD))
    out.mkdir(parents=True, exist_ok=True)
    ev = load_evaluations(configs, eval_dir)
    by_run = {c.run: c for c in configs}
    first = next(iter(ev.values()))
    data = first["data"] + (" (synthetic captions)" if first["synthetic_captions"] else "")

    t1 = table1_rows(configs)
    t1_cols = ["pair", "scale", "G", "d", "audio_params_paper", "audio_params_ours", "image_params_paper",
               "image_params_ours", "equal"]
    write_csv(out / "table1.csv", t1, t1_cols)

    rcols = recall_columns(DIRECTIONS)
    t2_cols = ["pair", "G", "d", "schedule", "best_epoch", *rcols, "i2s_R10_paper", "s2i_R10_paper",
               "train_minutes", "test_pairs", "data"]
    t2 = []
    for run in PAIR_RUNS:
        if run not in ev:
            continue
        e = first_phase(ev[run])
        t2.append({"pair": paper_name(run), "G": e["gru_layers"], "d": e["dim"], "schedule": e["schedule"].upper(),
                   "best_epoch": e["best_epoch"], **recall_cells(e["recall"], DIRECTIONS),
                   "i2s_R10_paper": None, "s2i_R10_paper": None,
                   "train_minutes": round(e["timing"]["train_wall_seconds"] / 60, 1), "test_pairs": e["test_pairs"],
                   "data": data})
    oracle = first.get("oracle")
    t2.append({"pair": "oracle (best possible on this corpus)", **recall_cells(oracle, DIRECTIONS),
               "test_pairs": first["test_pairs"], "data": data})
    write_csv(out / "table2.csv", t2, t2_cols)

    sched_cols = ["run", "schedule", "best_epoch", "best_phase", "val_avg_R10", *rcols, "train_minutes"]
    sched = []
    for name, run, phase, label in SCHEDULE_ROWS:
        if run not in ev or (phase == "restart" and not ev[run].get("base")):
            continue
        e = first_phase(ev[run]) if phase == "first" else ev[run]
        sched.append({"run": name, "schedule": label, "best_epoch": e["best_epoch"], "best_phase": e["best_phase"],
                      "val_avg_R10": e["val_avgR10"], **recall_cells(e["recall"], DIRECTIONS),
                      "train_minutes": round(e["timing"]["train_wall_seconds"] / 60, 1)})
    write_csv(out / "schedules.csv", sched, sched_cols)

    # Figure 2: validation R@10 per epoch; its data is also a DVC plot (figure2.csv).
    curve_rows, curves = [], {}
    for run, e in ev.items():
        hist = e["history"]
        c = by_run[run]
        restart_at = c.train.epochs + 1 if c.train.restart else None
        curves[run] = {"epochs": [h["epoch"] for h in hist],
                       "series": {"image->speech": [h["val_i2s_R10"] for h in hist],
                                  "speech->image": [h["val_s2i_R10"] for h in hist]},
                       "chosen": e["best_epoch"], "restart_at": restart_at}
        curve_rows += [{"run": run, "epoch": h["epoch"], "val_i2s_R10": h["val_i2s_R10"],
                        "val_s2i_R10": h["val_s2i_R10"], "val_avg_R10": h["val_avgR10"]} for h in hist]
    write_csv(out / "figure2.csv", curve_rows, ["run", "epoch", "val_i2s_R10", "val_s2i_R10", "val_avg_R10"], digits=4)
    plot_validation_curves(curves, out / "figure2.png",
                           title=f"Validation R@10 per epoch ({first['test_pairs']} validation pairs), chosen epoch circled")

    claims = check_claims(ev)
    total_train = sum(e["timing"]["train_wall_seconds"] for e in ev.values())
    def r10(e):
        # Named and rounded as Table 2 prints i2s_R10_ours / s2i_R10_ours.
        return {"i2s_R10": table_number(e["recall"]["a2b_R10"]), "s2i_R10": table_number(e["recall"]["b2a_R10"])}

    # Table 2 values under the run's name; a run with a restart also as "<run>-restart".
    metrics = {}
    for run, e in ev.items():
        metrics[run] = r10(first_phase(e))
        if e.get("base"):
            metrics[f"{run}-restart"] = r10(e)
    if oracle:
        metrics["oracle"] = {"i2s_R10": table_number(oracle["a2b_R10"]), "s2i_R10": table_number(oracle["b2a_R10"])}
    details = {"data": data, "profile": configs[0].profile, "claims": claims, "train_wall_seconds_total": total_train,
               "runs": {run: {"best_epoch": e["best_epoch"], "recall": e["recall"], "timing": e["timing"],
                              "parameters": e["parameters"]} for run, e in ev.items()}}
    write_results(out, metrics, details)
    text = render_markdown(t1, t1_cols, t2, t2_cols, sched, sched_cols, claims, ev, configs, data, oracle,
                           report_seconds=time.perf_counter() - started)
    atomic_write_text(out / "report.md", text)
    return {"metrics": metrics, "claims": claims}


def render_markdown(t1, t1_cols, t2, t2_cols, sched, sched_cols, claims, ev, configs, data, oracle,
                    report_seconds: float) -> str:
    c0 = configs[0]
    times = [(run, e["timing"]["train_wall_seconds"]) for run, e in ev.items()]
    total = sum(t for _, t in times)
    lines = [
        "# Mortazavi 2020: speech-image alignment from scratch",
        "",
        f"Data: **{data}**. Profile `{c0.profile}`; batch {c0.train.batch_size}, Adam at lr {c0.train.lr:g}, "
        f"hinge margin {c0.train.margin:g} (the paper's margin and learning rate were lost from our copy: our "
        f"choices), {c0.train.epochs} epochs, random crops (pad {c0.train.crop_pad}), no flips (a flip swaps left "
        "and right in a digit scene and so changes what its caption says). The epoch is chosen on validation "
        "recall; the test pairs are scored once, at that epoch.",
        "",
        "The paper used Places audio captions (400k); we use the digit-scene corpus built here, which is far "
        "smaller and has only ten words. The numbers are not comparable with the paper's, only its claims are.",
        "",
        "## Table 1: trainable parameters",
        "",
        "The five structures at paper scale are instantiated (not trained) and counted; all ten counts must equal "
        "the paper's (docs/mortazavi-architecture.md says what they pinned down). The rows below them are the "
        "models trained here.",
        "",
        markdown_table(t1, t1_cols),
        "",
        "## Table 2: recall on the test pairs",
        "",
        f"R@k per direction (i2s: image query, speech candidates; s2i: the reverse) and their mean; {CHANCE_NOTE}. "
        + oracle_note(oracle) + " The paper's R@10 values were lost from our copy (n/a).",
        "",
        markdown_table(t2, t2_cols),
        "",
        "## Schedules (DG3A1024)",
        "",
        markdown_table(sched, sched_cols),
        "",
        "## Figure 2: validation R@10 per epoch",
        "",
        "![validation R@10 per epoch](figure2.png)",
        "",
        "## The paper's claims beside ours",
        "",
        markdown_table([{"claim": c["claim"], "ours": c["ours"], "rule": c["rule"],
                         "holds": "yes" if c["holds"] else "no"} for c in claims],
                       ["claim", "ours", "rule", "holds"]),
        "",
        "## Time",
        "",
        markdown_table([{"run": run, "train_minutes": round(t / 60, 1)} for run, t in times]
                       + [{"run": "all runs", "train_minutes": round(total / 60, 1)}], ["run", "train_minutes"]),
        "",
        f"Hardware: {hardware_summary()}. Report built in {report_seconds:.1f} s.",
        "",
    ]
    return "\n".join(lines)


def stage(params: Params, progress: bool = True) -> str:
    """DVC stage mortazavi2020-report: Tables 1 and 2, the schedules table, Figure 2, metrics and
    report.md -> results/mortazavi2020/."""
    from vgs.methods.mortazavi2020.config import load_run_config, run_names
    from vgs.paths import results_dir
    configs = [load_run_config(params, run) for run in run_names(params)]
    out = build_report(configs)
    lines = [f"{results_dir('mortazavi2020')}/: table1.csv, table2.csv, schedules.csv, figure2.png, metrics.json, "
             "report.md"]
    for run, m in out["metrics"].items():
        lines.append(f"  {run:>18}  R@10 image->speech {m['i2s_R10']:.3f}  speech->image {m['s2i_R10']:.3f}")
    for c in out["claims"]:
        lines.append(f"  {c['claim']}: {'yes' if c['holds'] else 'no'}")
    return "\n".join(lines)
