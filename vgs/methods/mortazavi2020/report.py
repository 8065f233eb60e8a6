"""The Mortazavi 2020 report: Table 1 (parameter counts, exact), Table 2 (recall of the five encoder
pairs, trained from scratch), the schedule comparison, Figure 2 (validation R@10 per epoch) and the
paper's four claims beside our numbers, as a `PaperReport` that the shared renderer
(vgs/report/render.py) writes to results/mortazavi2020/.

Every recall value is read from data/eval/mortazavi2020/<run>.json (one per run); the paper's
R@10 values were lost from our copy of the text, so its columns read "n/a" and are never filled.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from vgs.errors import StoreError
from vgs.methods.mortazavi2020.config import METHOD, RunConfig, eval_path
from vgs.methods.mortazavi2020.paper import CLAIM_STATEMENTS, PAPER_PAIRS, TABLE1_COUNTS, TABLE2_R10
from vgs.nn.speech_rnn import count_parameters, speech_embedder, image_embedder
from vgs.params import Params
from vgs.paths import results_dir
from vgs.report.metrics import table_number
from vgs.report.recall import (CHANCE_NOTE, oracle_note, plot_validation_curves, recall_cells, recall_columns)
from vgs.report.render import (Claim, Figure, PaperReport, Section, Table, render, summary_lines, verdict_of)
from vgs.report.tables import hardware_summary, write_csv
from vgs.report.verdicts import UNTESTED

DIRECTIONS = {"a2b": "i2s", "b2a": "s2i"}   # image-to-speech, speech-to-image
PAIR_RUNS = ("dg4a2048", "dg4a1024", "dg3a1024", "dg2a2048", "dg2a1024")
# (row name, run, phase): the restart is a second phase of the dg3a1024 run itself, so its first
# phase is plain CALR (Table 2's DG3A1024) and the whole run is CALR + restart.
SCHEDULE_ROWS = [("dg3a1024", "dg3a1024", "first", "CALR"),
                 ("dg3a1024-calwr", "dg3a1024-calwr", "all", "CALWR"),
                 ("dg3a1024-cylr", "dg3a1024-cylr", "all", "CYLR (the paper's CYLR)"),
                 ("dg3a1024-restart", "dg3a1024", "restart", "CALR + one warm restart from the best epoch at lr/2")]
LITTLE_LOSS = 0.05   # claim 3: "loses little" = at most 5 points of average R@10

TABLE1_COLUMNS = ["pair", "scale", "G", "d", "audio_params_paper", "audio_params_ours", "image_params_paper",
                  "image_params_ours", "equal"]
RECALL_COLUMNS = recall_columns(DIRECTIONS, ranking=True)   # R@k, then MRR and nDCG@10
TABLE2_COLUMNS = ["pair", "G", "d", "schedule", "best_epoch", *RECALL_COLUMNS, "i2s_R10_paper", "s2i_R10_paper",
                  "train_minutes", "test_pairs", "data"]
SCHEDULE_COLUMNS = ["run", "schedule", "best_epoch", "best_phase", "val_avg_R10", *RECALL_COLUMNS, "train_minutes"]
FIGURE2_COLUMNS = ["run", "epoch", "val_i2s_R10", "val_s2i_R10", "val_avg_R10"]
# Every claim compares single runs (one seed per configuration) by a plain threshold.
ONE_SEED = "single runs (one seed each): a plain threshold, no noise test"


def paper_name(run: str) -> str:
    return run.split("-")[0].upper()


def _minutes(e: dict) -> float:
    return round(e["timing"]["train_wall_seconds"] / 60, 1)


def _avg10(e: dict) -> float:
    return e["recall"]["avgR10"]


# --- reading -----------------------------------------------------------------------------------

def load_evaluations(configs: list[RunConfig], eval_dir=None) -> dict[str, dict]:
    out = {}
    for c in configs:
        path = Path(eval_dir) / f"{c.run}.json" if eval_dir else eval_path(c.run)
        if not path.exists():
            raise StoreError(f"evaluation {path} is missing", hint=f"dvc repro {METHOD}-evaluate@{c.run}")
        out[c.run] = json.loads(path.read_text())
    return out


def first_phase(e: dict) -> dict:
    """A run's evaluation as it stood at the end of its first phase: the run itself when it has no
    warm restart; otherwise recall, chosen epoch and training time of its best CALR epoch."""
    base = e.get("base")
    if not base:
        return e
    timing = {**e["timing"], "train_wall_seconds": base["train_wall_seconds"] or e["timing"]["train_wall_seconds"]}
    return {**e, "recall": base["recall"], "best_epoch": base["best_epoch"], "best_phase": "base",
            "val_avgR10": base["val_avgR10"], "timing": timing}


def data_name(ev: dict[str, dict]) -> str:
    first = next(iter(ev.values()))
    return first["data"] + (" (synthetic captions)" if first["synthetic_captions"] else "")


# --- tables ------------------------------------------------------------------------------------

def table1_rows(configs: list[RunConfig], ev: dict[str, dict]) -> list[dict]:
    """Paper-scale counts of the five Table 1 structures (instantiated, not trained), then the
    counts of the models this profile trained (as the export counted them: their input sizes come
    from the feature stores, which the report does not read)."""
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
        counts = ev[c.run]["parameters"]
        rows.append({"pair": paper_name(c.run), "scale": f"trained here ({c.profile} profile, {c.model.image_net}, "
                                                        f"{c.model.in_channels} channel)",
                     "G": c.model.gru_layers, "d": c.model.dim, "audio_params_paper": None,
                     "audio_params_ours": counts["audio"], "image_params_paper": None,
                     "image_params_ours": counts["image"], "equal": None})
    return rows


def table2_rows(ev: dict[str, dict], data: str) -> list[dict]:
    """The five pairs as Table 2 prints them (a run with a restart at the end of its CALR phase),
    then the oracle row: the best recall any model can reach on this corpus."""
    rows = []
    for run in PAIR_RUNS:
        if run not in ev:
            continue
        e = first_phase(ev[run])
        i2s_paper, s2i_paper = TABLE2_R10[paper_name(run)]
        rows.append({"pair": paper_name(run), "G": e["gru_layers"], "d": e["dim"], "schedule": e["schedule"].upper(),
                     "best_epoch": e["best_epoch"], **recall_cells(e["recall"], DIRECTIONS, ranking=True),
                     "i2s_R10_paper": i2s_paper, "s2i_R10_paper": s2i_paper,
                     "train_minutes": _minutes(e), "test_pairs": e["test_pairs"], "data": data})
    first = next(iter(ev.values()))
    rows.append({"pair": "oracle (best possible on this corpus)",
                 **recall_cells(first.get("oracle"), DIRECTIONS, ranking=True),
                 "test_pairs": first["test_pairs"], "data": data})
    return rows


def schedule_rows(ev: dict[str, dict]) -> list[dict]:
    rows = []
    for name, run, phase, label in SCHEDULE_ROWS:
        if run not in ev or (phase == "restart" and not ev[run].get("base")):
            continue
        e = first_phase(ev[run]) if phase == "first" else ev[run]
        rows.append({"run": name, "schedule": label, "best_epoch": e["best_epoch"], "best_phase": e["best_phase"],
                     "val_avg_R10": e["val_avgR10"], **recall_cells(e["recall"], DIRECTIONS, ranking=True),
                     "train_minutes": _minutes(e)})
    return rows


def time_rows(ev: dict[str, dict]) -> list[dict]:
    """Training minutes per run (a run with a restart: both phases) and all runs together."""
    seconds = {run: e["timing"]["train_wall_seconds"] for run, e in ev.items()}
    return ([{"run": run, "train_minutes": round(s / 60, 1)} for run, s in seconds.items()]
            + [{"run": "all runs", "train_minutes": round(sum(seconds.values()) / 60, 1)}])


# --- Figure 2 ----------------------------------------------------------------------------------

def figure2_curves(ev: dict[str, dict], configs: list[RunConfig]) -> dict[str, dict]:
    by_run = {c.run: c for c in configs}
    curves = {}
    for run, e in ev.items():
        hist, c = e["history"], by_run[run]
        curves[run] = {"epochs": [h["epoch"] for h in hist],
                       "series": {"image->speech": [h["val_i2s_R10"] for h in hist],
                                  "speech->image": [h["val_s2i_R10"] for h in hist]},
                       "chosen": e["best_epoch"], "restart_at": c.train.epochs + 1 if c.train.restart else None}
    return curves


def figure2_rows(ev: dict[str, dict]) -> list[dict]:
    return [{"run": run, "epoch": h["epoch"], "val_i2s_R10": h["val_i2s_R10"], "val_s2i_R10": h["val_s2i_R10"],
             "val_avg_R10": h["val_avgR10"]} for run, e in ev.items() for h in e["history"]]


def draw_figure2(ev: dict[str, dict], configs: list[RunConfig], out: Path) -> Figure:
    """figure2.png and its data, figure2.csv (a DVC plot). The CSV is written here beside the
    figure, not as a renderer `Table`: a Table is also printed in report.md, and a 35-row curve
    table there would bury the report."""
    test_pairs = next(iter(ev.values()))["test_pairs"]
    write_csv(out / "figure2.csv", figure2_rows(ev), FIGURE2_COLUMNS, digits=4)
    plot_validation_curves(figure2_curves(ev, configs), out / "figure2.png",
                           title=f"Validation R@10 per epoch ({test_pairs} validation pairs), chosen epoch circled")
    return Figure("figure2.png", "validation R@10 per epoch")


# --- claims ------------------------------------------------------------------------------------

def _untested(name: str, statement: str, rule: str, runs) -> Claim:
    return Claim(name, statement, "n/a", rule, UNTESTED, f"not evaluated here: {', '.join(runs)}")


def claim_above_chance(ev: dict[str, dict]) -> Claim:
    name, rule = "1. From scratch, recall is far above chance", "at least 5x chance R@10"
    present = [r for r in PAIR_RUNS if r in ev]
    if not present:
        return _untested(name, CLAIM_STATEMENTS["above_chance"], rule, PAIR_RUNS)
    chance = 10 / next(iter(ev.values()))["test_pairs"]
    worst = min(present, key=lambda r: _avg10(ev[r]))
    return Claim(name, CLAIM_STATEMENTS["above_chance"],
                 f"lowest average R@10 of the five pairs: {_avg10(ev[worst]):.3f} ({paper_name(worst)}); "
                 f"chance {chance:.3f}", rule, verdict_of(_avg10(ev[worst]) >= 5 * chance), ONE_SEED)


def claim_g3_best(ev: dict[str, dict]) -> Claim:
    name = "2. The mid-sized G3 pair beats the largest (G4) and smallest (G2) of the same width"
    rule, runs = "G3 strictly above both", ("dg3a1024", "dg4a1024", "dg2a1024")
    if not all(r in ev for r in runs):
        return _untested(name, CLAIM_STATEMENTS["g3_best"], rule, [r for r in runs if r not in ev])
    g3, g4, g2 = (_avg10(ev[r]) for r in runs)
    return Claim(name, CLAIM_STATEMENTS["g3_best"],
                 f"average R@10 at d={ev['dg3a1024']['dim']}: G3 {g3:.3f}, G4 {g4:.3f}, G2 {g2:.3f}",
                 rule, verdict_of(g3 > g4 and g3 > g2), ONE_SEED)


def claim_small_audio(ev: dict[str, dict]) -> Claim:
    name = "3. The smallest audio embedder (DG2A1024) loses little recall against the largest (DG4A2048)"
    rule, runs = f"loss at most {LITTLE_LOSS:.2f}", ("dg2a1024", "dg4a2048")
    if not all(r in ev for r in runs):
        return _untested(name, CLAIM_STATEMENTS["small_audio"], rule, [r for r in runs if r not in ev])
    small, large = (_avg10(ev[r]) for r in runs)
    return Claim(name, CLAIM_STATEMENTS["small_audio"],
                 f"average R@10 {small:.3f} vs {large:.3f} (loss {large - small:+.3f})",
                 rule, verdict_of(large - small <= LITTLE_LOSS), ONE_SEED)


def claim_restart(full: dict[str, dict]) -> Claim:
    name, rule = "4. A warm restart improves R@10", "higher test R@10 after the restart"
    run = full.get("dg3a1024")
    if not (run and run.get("base")):
        return _untested(name, CLAIM_STATEMENTS["restart"], rule, ["dg3a1024 with its warm restart"])
    base, restart = _avg10(first_phase(run)), _avg10(run)
    return Claim(name, CLAIM_STATEMENTS["restart"],
                 f"average test R@10 {base:.3f} (CALR) -> {restart:.3f} (with restart; the epoch chosen "
                 f"on validation is from the {run['best_phase']} phase)",
                 rule, verdict_of(restart > base), ONE_SEED)


def check_claims(ev: dict[str, dict]) -> list[Claim]:
    """The paper's four claims, each with our numbers and its verdict; a claim whose runs were not
    evaluated is "untested" (kept in place, so that claim n is always the n-th)."""
    pairs = {run: first_phase(e) for run, e in ev.items()}   # claims 1-3 compare the pairs as Table 2 does
    return [claim_above_chance(pairs), claim_g3_best(pairs), claim_small_audio(pairs), claim_restart(ev)]


# --- metrics and details -----------------------------------------------------------------------

def _r10(recall: dict) -> dict:
    # Named and rounded as Table 2 prints i2s_R10_ours / s2i_R10_ours.
    return {"i2s_R10": table_number(recall["a2b_R10"]), "s2i_R10": table_number(recall["b2a_R10"])}


def headline(ev: dict[str, dict]) -> dict:
    """Table 2 values under the run's name; a run with a restart also as "<run>-restart"."""
    metrics = {}
    for run, e in ev.items():
        metrics[run] = _r10(first_phase(e)["recall"])
        if e.get("base"):
            metrics[f"{run}-restart"] = _r10(e["recall"])
    oracle = next(iter(ev.values())).get("oracle")
    if oracle:
        metrics["oracle"] = _r10(oracle)
    return metrics


def details(ev: dict[str, dict], configs: list[RunConfig]) -> dict:
    return {"profile": configs[0].profile,
            "train_wall_seconds_total": sum(e["timing"]["train_wall_seconds"] for e in ev.values()),
            "runs": {run: {"best_epoch": e["best_epoch"], "recall": e["recall"], "timing": e["timing"],
                           "parameters": e["parameters"]} for run, e in ev.items()}}


# --- text --------------------------------------------------------------------------------------

INTRO = ("Table 1 (parameter counts), Table 2 (recall of the five encoder pairs, trained from scratch), the "
         "learning-rate schedules on DG3A1024, Figure 2 (validation R@10 per epoch) and the paper's four claims, "
         "from the mortazavi2020 evaluate stages (data/eval/mortazavi2020/<run>.json, one per run).")
CORPUS_NOTE = ("The paper used Places audio captions (400k); we use the digit-scene corpus built here, which is far "
               "smaller and has only ten words. The numbers are not comparable with the paper's, only its claims are.")
TABLE1_NOTE = ("The five structures at paper scale are instantiated (not trained) and counted; all ten counts must "
               "equal the paper's (docs/mortazavi-architecture.md says what they pinned down). The rows below them "
               "are the models trained here.")


def setup_text(c0: RunConfig) -> str:
    return (f"Profile `{c0.profile}`; batch {c0.train.batch_size}, Adam at lr {c0.train.lr:g}, hinge margin "
            f"{c0.train.margin:g} (the paper's margin and learning rate were lost from our copy: our choices), "
            f"{c0.train.epochs} epochs, random crops (pad {c0.train.crop_pad}), no flips (a flip swaps left and right "
            "in a digit scene and so changes what its caption says). The epoch is chosen on validation recall; the "
            "test pairs are scored once, at that epoch.")


def table2_note(oracle: dict | None) -> str:
    return (f"R@k per direction (i2s: image query, speech candidates; s2i: the reverse) and their mean; "
            f"{CHANCE_NOTE}. " + oracle_note(oracle) + " The paper's R@10 values were lost from our copy (n/a).")


def sections(configs: list[RunConfig], ev: dict[str, dict], data: str, figure2: Figure,
             started: float) -> list[Section]:
    oracle = next(iter(ev.values())).get("oracle")
    return [
        Section("Setup", [setup_text(configs[0]), CORPUS_NOTE]),
        Section("Table 1: trainable parameters", [TABLE1_NOTE, Table("table1", table1_rows(configs, ev),
                                                                     TABLE1_COLUMNS)]),
        Section("Table 2: recall on the test pairs", [table2_note(oracle), Table("table2", table2_rows(ev, data),
                                                                                 TABLE2_COLUMNS)]),
        Section("Schedules (DG3A1024)", [Table("schedules", schedule_rows(ev), SCHEDULE_COLUMNS)]),
        Section("Figure 2: validation R@10 per epoch", [figure2]),
        Section("Time", [Table("time", time_rows(ev), ["run", "train_minutes"], csv=False),
                         f"Hardware: {hardware_summary()}. Report built in {time.perf_counter() - started:.1f} s."]),
    ]


def build_report(configs: list[RunConfig], out_dir=None, eval_dir=None) -> PaperReport:
    """Reads the evaluations, draws Figure 2 into `out_dir` and returns the report for `render`."""
    started = time.perf_counter()
    out = Path(out_dir or results_dir(METHOD))
    out.mkdir(parents=True, exist_ok=True)
    ev = load_evaluations(configs, eval_dir)
    data = data_name(ev)
    figure2 = draw_figure2(ev, configs, out)
    return PaperReport(
        paper=METHOD, title="Mortazavi 2020: speech-image alignment from scratch", data=data, intro=INTRO,
        claims=check_claims(ev), headline=headline(ev), details=details(ev, configs),
        sections=sections(configs, ev, data, figure2, started))


def run_lines(report: PaperReport) -> list[str]:
    return [f"  {run:>18}  R@10 image->speech {m['i2s_R10']:.3f}  speech->image {m['s2i_R10']:.3f}"
            for run, m in report.headline.items()]


def stage(params: Params, progress: bool = True) -> str:
    """DVC stage mortazavi2020-report: Tables 1 and 2, the schedules table, Figure 2, metrics and
    report.md -> results/mortazavi2020/."""
    from vgs.methods.mortazavi2020.config import load_run_config, run_names
    configs = [load_run_config(params, run) for run in run_names(params)]
    out = results_dir(METHOD)
    report = build_report(configs, out_dir=out)
    render(report, out)
    summary = summary_lines(report, out)
    return "\n".join([summary[0] + ", figure2.png, figure2.csv", *run_lines(report), *summary[1:]])
