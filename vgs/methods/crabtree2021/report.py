"""The Crabtree 2021 report: Tables 3.1-5.1 with the thesis's value beside ours cell by cell, the
noise floor from the baseline's seeds, the thesis's six findings as `Claim`s with our numbers and a
verdict from the shared rule (vgs/report/verdicts.py: holds / does not hold / within noise /
untested), and the figures. `build_report` computes them and draws the figures; the shared renderer
(vgs/report/render.py, through `write_report`) writes the CSVs, metrics.json, details.json and
report.md in results/crabtree2021/.

Every number of ours is read from data/eval/crabtree2021/<run>.json (one per run); the thesis's
from paper.py. Recall cells are avgR@k (both directions' mean, Sec. 3.1.3) in percent, like the
thesis. The full-graph InfoNCE average-pooled separate-encoder run `baseline` is trained once and
read by every table that shows it (3.3, 4.1, 4.2, 5.1). Table 3.3's hyperspheric column is the
lambda_unif of Table 3.1 with the best validation recall (the thesis chose on test).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from vgs.errors import ParamError, StoreError
from vgs.methods.crabtree2021.config import METHOD, RunConfig, embeddings_dir, eval_path, view_pair_keys
from vgs.methods.crabtree2021.pretrain import SUMMARY_FILE, pretrain_dir
from vgs.methods.crabtree2021.paper import (CHOSEN_HYPERSPHERIC, COLUMNS, paper_best_epoch, paper_cell, paper_header,
                                            paper_mean)
from vgs.params import Params
from vgs.paths import results_dir
from vgs.report.figures import plot_tsne_grid, plt, save_figure
from vgs.report.metrics import table_number
from vgs.report.recall import plot_validation_curves
from vgs.report import verdicts as V
from vgs.report.render import Claim, Figure, PaperReport, Section, Table, render, summary_lines
from vgs.report.tables import hardware_summary

KS = (1, 5, 10)
BUDGET_MINUTES = 50          # the wall time the whole paper may take inside a cpu-profile make run
BASELINE = "baseline"
SCRATCH_RUN = "image-scratch"   # not in the thesis: the baseline with its image trunk from scratch
HSPHERE_RUNS = COLUMNS["table3_1"][1]
OBJECTIVE_RUNS = COLUMNS["table3_3"][1]        # CHOSEN_HYPERSPHERIC first
MHSA_RUNS = COLUMNS["table3_4"][1]
SCHEME_RUNS = COLUMNS["table4_1"][1]
SHARED_RUNS = COLUMNS["table5_1"][1]
LABELS = {"hsphere-u100": "hyperspheric lambda_unif 1", "hsphere-u0875": "hyperspheric lambda_unif 0.875",
          "hsphere-u075": "hyperspheric lambda_unif 0.75", "hsphere-u050": "hyperspheric lambda_unif 0.5",
          "triplet": "triplet", BASELINE: "InfoNCE (baseline)", "mms-m1": "MMS M=1", "mms-sched": "MMS scheduled",
          "mms-adapt": "MMS adaptive", "mhsa-lr3-drop1": "MHSA lr 1e-3 drop .1",
          "mhsa-lr4-drop1": "MHSA lr 1e-4 drop .1", "mhsa-lr4-drop3": "MHSA lr 1e-4 drop .3",
          "mhsa-lr4-drop5": "MHSA lr 1e-4 drop .5", "mhsa-nocls": "MHSA no CLS", "avg-int-mhsa": "avg + internal MHSA",
          "transformer": "Transformer", "image-anchor": "image anchor", "average-anchor": "average anchor",
          "contrast-others": "contrast-others", "shared-basic": "shared basic", "shared-seq": "shared seq. emb.",
          "shared-chan": "shared chan. emb."}
# (name, title, pair groups, reference column for the "against" line)
TABLES = [
    ("table3_1", "Table 3.1: hyperspheric loss, average pooling - image retrieval", ("image",)),
    ("table3_2", "Table 3.2: hyperspheric loss, average pooling - cross-lingual retrieval", ("crosslingual",)),
    ("table3_3", "Table 3.3: six objectives, average pooling, full graph", ("image", "crosslingual")),
    ("table3_4", "Table 3.4: MHSA pooling with CLS, InfoNCE - image retrieval", ("image",)),
    ("table3_5", "Table 3.5: MHSA pooling with CLS, InfoNCE - cross-lingual retrieval", ("crosslingual",)),
    ("table3_6", "Table 3.6: more pooling configurations, InfoNCE (the thesis printed image retrieval only)",
     ("image", "crosslingual")),
    ("table4_1", "Table 4.1: multiview schemes, InfoNCE - image retrieval", ("image",)),
    ("table4_2", "Table 4.2: multiview schemes, InfoNCE - cross-lingual retrieval", ("crosslingual",)),
    ("table5_1", "Table 5.1: one speech encoder shared by all languages", ("image", "crosslingual")),
]
FIGURE_GROUPS = {  # validation curves: one figure per group of tables
    "validation_table3_1": ("Tables 3.1-3.2 (hyperspheric lambda_unif)", HSPHERE_RUNS),
    "validation_table3_3": ("Table 3.3 (objectives)", OBJECTIVE_RUNS),
    "validation_table3_4": ("Tables 3.4-3.5 (MHSA pooling)", MHSA_RUNS),
    "validation_table3_6": ("Table 3.6 (more poolings)", COLUMNS["table3_6"][1]),
    "validation_table4_1": ("Tables 4.1-4.2 (multiview schemes)", SCHEME_RUNS),
    "validation_table5_1": ("Table 5.1 (shared encoders)", SHARED_RUNS),
}
GROUP_NAMES = {"image": "image", "crosslingual": "cross-lingual"}


# Two numbers per configuration (22 in the cpu profile), 4 for the noise floor and one per finding
# (the renderer's claims.<key>, 6): 54, above the usual bound because the thesis's tables are a
# sweep of 22 points ("one per sweep point"). The bound still catches a headline that swallowed the
# per-view-pair tables (6 pairs x 3 ks per run).
HEADLINE_LIMIT = 56


def pct(v):
    return None if v is None else 100.0 * v


def load_evaluations(configs: list[RunConfig], eval_dir=None) -> dict[str, dict]:
    out = {}
    for c in configs:
        path = Path(eval_dir) / f"{c.run}.json" if eval_dir else eval_path(c.run)
        if not path.exists():
            raise StoreError(f"evaluation {path} is missing", hint=f"dvc repro {METHOD}-evaluate@{c.run}")
        out[c.run] = json.loads(path.read_text())
    return out


# -- noise floor -----------------------------------------------------------------------------------
def noise_floor(ev: dict[str, dict], configs: dict[str, RunConfig], runs: list[str], metric_rows) -> dict | None:
    """Mean and sample standard deviation over the seeds of one configuration: per table cell and for
    the three summaries. None with fewer than two seed runs present."""
    present = [r for r in runs if r in ev]
    if len(present) < 2:
        return None
    first = configs[present[0]].config_without_seed()
    for r in present[1:]:
        if configs[r].config_without_seed() != first:
            raise ParamError(f"{METHOD}.report.noise_runs: {r!r} differs from {present[0]!r} in more than its seed",
                             hint="list only runs that repeat one configuration with other seeds")

    def stats(values):
        v = np.asarray(values, dtype=np.float64)
        return {"values": [float(x) for x in v], "mean": float(v.mean()), "std": float(v.std(ddof=1))}

    out = {"runs": present, "seeds": [configs[r].seed for r in present],
           "summary": {g: stats([ev[r]["summary"][g] for r in present]) for g in ("image", "crosslingual", "all")},
           "cells": {f"{pair} avgR{k}": stats([ev[r]["recall"][pair][f"avgR{k}"] for r in present])
                     for pair, k in metric_rows}}
    return out


def sigma(noise: dict | None, group: str) -> float | None:
    return None if noise is None else noise["summary"][group]["std"]


# -- tables ----------------------------------------------------------------------------------------
def table_columns(name: str, ev: dict, chosen_hsphere: str | None) -> list[tuple[str, str]]:
    """[(paper key, our run)] of a table, for the runs that were evaluated."""
    cols = []
    for key in COLUMNS[name][1]:
        run = chosen_hsphere if key == CHOSEN_HYPERSPHERIC else key
        if run is not None and run in ev:
            cols.append((key, run))
    return cols


def build_table(name: str, groups, ev: dict, pair_keys: dict, chosen: str | None, data: str,
                params_rows: dict | None = None) -> tuple[list[dict], list[str], list[tuple[str, str]]]:
    cols = table_columns(name, ev, chosen)
    oracle = next(iter(ev.values()))["oracle"]
    columns = ["metric"] + [c for _, run in cols for c in (f"{run}_ours", f"{run}_paper")] + ["oracle", "data"]
    rows = [{"metric": "Best Epoch", "data": data,
             **{f"{run}_ours": ev[run]["best_epoch"] for _, run in cols},
             **{f"{run}_paper": paper_best_epoch(name, key) for key, run in cols}}]
    for g in groups:
        for pair in pair_keys[g]:
            for k in KS:
                o = oracle.get(pair)
                rows.append({"metric": f"{pair} avgR{k}", "oracle": None if o is None else pct(o[f"avgR{k}"]),
                             "data": data,
                             **{f"{run}_ours": pct(ev[run]["recall"][pair][f"avgR{k}"]) for _, run in cols},
                             **{f"{run}_paper": pct(paper_cell(name, key, pair, k)) for key, run in cols}})
    for g in groups:
        o = next(iter(ev.values())).get("oracle_summary")
        rows.append({"metric": f"mean {GROUP_NAMES[g]} avgR10", "oracle": None if o is None else pct(o[g]),
                     "data": data,
                     **{f"{run}_ours": pct(ev[run]["summary"][g]) for _, run in cols},
                     **{f"{run}_paper": pct(paper_mean(name, key, pair_keys[g])) for key, run in cols}})
    for label, counts in (params_rows or {}).items():
        rows.append({"metric": label, "data": data, **{f"{run}_ours": counts.get(run) for _, run in cols}})
    return rows, columns, cols


def against_line(cols, ev, reference: str | None, noise, groups) -> str:
    """Each column's mean avgR10 minus the reference's, marked "within noise" when under 2 std."""
    if reference is None or reference not in ev:
        return ""
    parts = []
    for _, run in cols:
        if run == reference:
            continue
        cells = []
        for g in groups:
            d = ev[run]["summary"][g] - ev[reference]["summary"][g]
            quiet = noise is not None and V.two_single_runs(
                ev[run]["summary"][g], ev[reference]["summary"][g], sigma(noise, g), len(noise["runs"])).verdict == V.NOISE
            cells.append(f"{GROUP_NAMES[g]} {100 * d:+.2f}" + (" (within noise)" if quiet else ""))
        parts.append(f"{run}: " + ", ".join(cells))
    return (f"Mean avgR10 against `{reference}` (percentage points; within noise = two single runs apart by less "
            "than t(0.975, n-1) x sqrt(2) x the seeds' standard deviation): " + "; ".join(parts) + ".") if parts else ""


# -- findings --------------------------------------------------------------------------------------
IMAGE_PAIRS = ["image-en", "image-hi", "image-ja"]
CROSS_PAIRS = ["en-hi", "en-ja", "hi-ja"]


class Finding(NamedTuple):
    claim: Claim
    rests_on_one_seed: bool        # a part of the verdict compares single runs (details.json keeps it)


def _thesis_schemes() -> str:
    p = lambda key, pairs: 100 * paper_mean("table4_1", key, pairs)  # noqa: E731
    return (f"image mean avgR10 full {p(BASELINE, IMAGE_PAIRS):.2f}, image anchor {p('image-anchor', IMAGE_PAIRS):.2f}; "
            f"cross-lingual full {p(BASELINE, CROSS_PAIRS):.2f}, image anchor {p('image-anchor', CROSS_PAIRS):.2f}, "
            f"contrast-others {p('contrast-others', CROSS_PAIRS):.2f}; average anchor all pairs "
            f"{p('average-anchor', IMAGE_PAIRS + CROSS_PAIRS):.2f}")


def _s(ev, run, g):
    return ev[run]["summary"][g]


def objective_runs(ev: dict, chosen: str | None) -> list[str]:
    """Table 3.3's evaluated runs: the chosen hyperspheric run, then the other objectives."""
    return [r for r in [chosen, *OBJECTIVE_RUNS[1:]] if r is not None and r in ev]


class Judge:
    """The shared statistical rule (vgs/report/verdicts.py) over our runs: the baseline's seeds give
    the spread, and a run whose validation never reached twice chance makes its claim untested."""

    def __init__(self, ev: dict, noise: dict | None, chance: float):
        self.ev, self.noise, self.chance = ev, noise, chance
        self.n_seeds = len(noise["runs"]) if noise else 0

    def sd(self, g: str) -> float:
        return self.noise["summary"][g]["std"]

    def seeds(self, g: str) -> list[float]:
        return self.noise["summary"][g]["values"]

    def s(self, run: str, g: str) -> float:
        return _s(self.ev, run, g)

    def seed_mean(self, g: str) -> float:
        return noise_mean(self.noise, self.ev, g)

    def have(self, runs) -> bool:
        return all(r in self.ev for r in runs)

    def learned(self, run: str) -> bool:
        return V.learned([h["val_avgR10"] for h in self.ev[run]["history"]], self.chance)

    def judged(self, runs, make) -> V.Verdict:
        """make()'s verdict, unless there is no seed spread or a run it rests on never learned."""
        if self.noise is None:
            return V.untested("no seed spread: crabtree2021.report.noise_runs has fewer than two evaluated runs")
        idle = [r for r in runs if not self.learned(r)]
        if idle:
            return V.untested(f"{', '.join(idle)} never reached twice chance ({200 * self.chance:.1f}%) on validation")
        return make()


def finding(name: str, thesis: str, ours: str, rule: str, parts: list[V.Verdict]) -> Finding:
    """A claim that needs every part: the weakest part's verdict, every part's evidence."""
    return Finding(Claim(name=name, paper=thesis, ours=ours, rule=rule, verdict=V.weakest(parts),
                         evidence="; ".join(p.evidence for p in parts)),
                   any(p.one_seed for p in parts))


def hyperspheric_finding(j: Judge) -> Finding | None:
    """1. Hyperspheric recall depends strongly on lambda_unif."""
    runs = [r for r in HSPHERE_RUNS if r in j.ev]
    if len(runs) < 2:
        return None
    vals = {r: j.s(r, "image") for r in runs}
    v = j.judged(runs, lambda: V.spread_of_single_runs(list(vals.values()), j.sd("image"), j.n_seeds))
    paper = {r: paper_mean("table3_1", r, IMAGE_PAIRS) for r in runs}
    return finding(
        "1. Hyperspheric recall depends strongly on lambda_unif (Table 3.1)",
        "image mean avgR10: " + ", ".join(f"{LABELS[r].split()[-1]}: {100 * paper[r]:.2f}" for r in runs),
        "image mean avgR10: " + ", ".join(f"{LABELS[r].split()[-1]}: {100 * vals[r]:.2f}" for r in runs)
        + f"; spread {100 * (max(vals.values()) - min(vals.values())):.2f} points",
        "the spread of the single runs (best minus worst) beyond the studentized range's 95% point for that "
        "many runs, in units of the baseline seeds' sd", [v])


def objectives_finding(j: Judge, chosen: str | None) -> Finding | None:
    """2. InfoNCE is best or tied-best among the objectives."""
    objectives = objective_runs(j.ev, chosen)
    if BASELINE not in objectives or len(objectives) < 2:
        return None
    others = [r for r in objectives if r != BASELINE]
    parts, verdicts, thesis = [], [], []
    for g, pairs in (("image", IMAGE_PAIRS), ("crosslingual", CROSS_PAIRS)):
        best = max(others, key=lambda r: j.s(r, g))
        v = j.judged([BASELINE, best], lambda: V.one_run_against_seeds(j.s(best, g), j.seeds(g),
                                                                       expect_positive=False))
        if v.verdict == V.NOISE:      # tied within noise: the claim says "best or tied-best"
            v = V.Verdict(V.HOLDS, v.difference, v.evidence + " (tied)", v.p_value, v.one_seed)
        verdicts.append(v)
        parts.append(f"{GROUP_NAMES[g]}: InfoNCE {100 * j.seed_mean(g):.2f} (seed mean) vs best other "
                     f"{100 * j.s(best, g):.2f} ({best}): {v.verdict}")
        pvals = {key: paper_mean("table3_3", key, pairs) for key in OBJECTIVE_RUNS}
        pbest = max((k for k in pvals if k != BASELINE), key=pvals.get)
        thesis.append(f"{GROUP_NAMES[g]}: InfoNCE {100 * pvals[BASELINE]:.2f} vs best other "
                      f"{100 * pvals[pbest]:.2f} ({paper_header('table3_3', pbest)})")
    return finding("2. InfoNCE is best or tied-best among the objectives (Table 3.3)",
                   "; ".join(thesis) + " - by its own table InfoNCE is not always best", "; ".join(parts),
                   "the best other objective (one seed) not above the 95% prediction interval of InfoNCE's "
                   "seeds", verdicts)


def crosslingual_finding(j: Judge, chosen: str | None, oracle: dict | None) -> Finding | None:
    """3. Cross-lingual retrieval is harder than image retrieval, for every objective: judged against
    the oracle, since on this corpus the oracle itself is lower cross-lingually."""
    objectives = objective_runs(j.ev, chosen)
    if not objectives:
        return None
    oi = oracle["image"] if oracle else 1.0
    oc = oracle["crosslingual"] if oracle else 1.0

    def share_gap(im, cr):
        return im / oi - cr / oc

    gaps = [share_gap(a, b) for a, b in zip(j.seeds("image"), j.seeds("crosslingual"))] if j.noise else []
    parts, verdicts = [], []
    for r in objectives:
        if r == BASELINE and j.noise:
            v = j.judged([r], lambda: V.seeds_sign(gaps))
        else:
            gap = share_gap(j.s(r, "image"), j.s(r, "crosslingual"))
            v = j.judged([r], lambda: V.single_run_sign(gap, float(np.std(gaps, ddof=1)), j.n_seeds))
        verdicts.append(v)
        parts.append(f"{r} {100 * j.s(r, 'image') / oi:.1f}% vs {100 * j.s(r, 'crosslingual') / oc:.1f}% "
                     f"of the oracle ({v.verdict})")
    thesis = []
    for key in OBJECTIVE_RUNS:
        im = paper_mean("table3_3", key, IMAGE_PAIRS)
        cr = paper_mean("table3_3", key, CROSS_PAIRS)
        thesis.append(f"{paper_header('table3_3', key)} {100 * im:.2f} vs {100 * cr:.2f}")
    bound = ("" if oracle is None else
             f" (the oracle: {100 * oi:.2f} image vs {100 * oc:.2f} cross-lingual: a caption names 3 of 4 digits,"
             " and two captions of one scene may name different ones)")
    return finding("3. Cross-lingual retrieval is harder than image retrieval, for every objective (Table 3.3)",
                   "image vs cross-lingual mean avgR10: " + "; ".join(thesis),
                   "share of the oracle's mean avgR10 reached, image vs cross-lingual: " + "; ".join(parts) + bound,
                   "image's share of its oracle above cross-lingual's: a t-test over the baseline's seeds; one "
                   "seed of each other objective against t(0.975, n-1) x the seeds' sd of that gap", verdicts)


def mhsa_finding(j: Judge) -> Finding | None:
    """4. MHSA pooling does worse than average pooling; lr 1e-3 is unstable for it."""
    mhsa = [r for r in MHSA_RUNS if r in j.ev]
    if BASELINE not in j.ev or not mhsa:
        return None
    best = max(mhsa, key=lambda r: j.s(r, "all"))
    v1 = j.judged([BASELINE, best], lambda: V.one_run_against_seeds(j.s(best, "all"), j.seeds("all"),
                                                                    expect_positive=False))
    text = (f"best MHSA ({best}) all-pairs mean avgR10 {100 * j.s(best, 'all'):.2f} vs average pooling "
            f"{100 * j.seed_mean('all'):.2f} (seed mean) ({v1.verdict})")
    verdicts = [v1]
    if j.have(["mhsa-lr3-drop1", "mhsa-lr4-drop1"]):
        v2 = j.judged(["mhsa-lr3-drop1", "mhsa-lr4-drop1"], lambda: V.two_single_runs(
            j.s("mhsa-lr4-drop1", "all"), j.s("mhsa-lr3-drop1", "all"), j.sd("all"), j.n_seeds))
        verdicts.append(v2)
        text += (f"; lr 1e-3 {100 * j.s('mhsa-lr3-drop1', 'all'):.2f} (best epoch "
                 f"{j.ev['mhsa-lr3-drop1']['best_epoch']}) vs lr 1e-4 {100 * j.s('mhsa-lr4-drop1', 'all'):.2f} "
                 f"({v2.verdict})")
    pb = paper_mean("table3_4", "mhsa-lr4-drop1", IMAGE_PAIRS + CROSS_PAIRS)
    p3 = paper_mean("table3_4", "mhsa-lr3-drop1", IMAGE_PAIRS + CROSS_PAIRS)
    pavg = paper_mean("table3_3", BASELINE, IMAGE_PAIRS + CROSS_PAIRS)
    return finding("4. MHSA pooling does worse than average pooling, and lr 1e-3 is unstable for it "
                   "(Tables 3.4-3.5)",
                   f"all-pairs mean avgR10: best MHSA (lr 1e-4, drop .1) {100 * pb:.2f} vs average pooling "
                   f"{100 * pavg:.2f}; lr 1e-3 {100 * p3:.2f} (best epoch 1)", text,
                   "the best MHSA run (one seed) below the 95% prediction interval of average pooling's seeds; "
                   "lr 1e-4 above lr 1e-3 (two single runs) beyond t(0.975, n-1) x sqrt(2) x the seeds' sd",
                   verdicts)


def schemes_finding(j: Judge) -> Finding | None:
    """5. The multiview schemes: image anchor, average anchor, contrast-others against the full graph."""
    if not j.have([BASELINE, "image-anchor", "average-anchor", "contrast-others"]):
        return None
    full_im, full_cr = j.seed_mean("image"), j.seed_mean("crosslingual")
    ia_im, ia_cr = j.s("image-anchor", "image"), j.s("image-anchor", "crosslingual")
    aa, co_cr = j.s("average-anchor", "all"), j.s("contrast-others", "crosslingual")
    v_a = j.judged([BASELINE, "image-anchor"], lambda: V.one_run_against_seeds(ia_im, j.seeds("image")))
    if v_a.verdict == V.NOISE:    # "roughly matches": not below the full graph's interval
        v_a = V.Verdict(V.HOLDS, v_a.difference, v_a.evidence + " (matches)", None, True)
    elif v_a.verdict == V.HOLDS:   # above the full graph: matches at least
        v_a = V.Verdict(V.HOLDS, v_a.difference, v_a.evidence + " (above)", None, True)
    # collapse: under half the full graph's cross-lingual recall
    v_b = j.judged([BASELINE], lambda: V.one_run_against_seeds(ia_cr, [x / 2 for x in j.seeds("crosslingual")],
                                                               expect_positive=False))
    # the average anchor fails to learn: its validation never reaches twice chance
    v_c = (V.Verdict(V.FAILS, aa - j.chance, "average anchor's validation reached twice chance", None, True)
           if j.learned("average-anchor") else
           V.Verdict(V.HOLDS, aa - j.chance, "average anchor's validation never reached twice chance", None, True))
    v_d = j.judged([BASELINE, "contrast-others"], lambda: V.one_run_against_seeds(
        co_cr, [x / 2 for x in j.seeds("crosslingual")]))
    return finding("5. The image anchor roughly matches the full graph for image retrieval but collapses "
                   "cross-lingual retrieval; the average anchor fails to learn; contrast-others keeps most "
                   "of the cross-lingual recall (Tables 4.1-4.2)",
                   _thesis_schemes(),
                   f"image mean avgR10 full {100 * full_im:.2f} (seed mean), image anchor {100 * ia_im:.2f} "
                   f"({v_a.verdict}); cross-lingual full {100 * full_cr:.2f}, image anchor {100 * ia_cr:.2f} "
                   f"({v_b.verdict}), contrast-others {100 * co_cr:.2f} ({v_d.verdict}); average anchor all "
                   f"pairs {100 * aa:.2f}, chance {100 * j.chance:.2f} ({v_c.verdict})",
                   "image anchor not below the full graph's 95% prediction interval (image); its cross-lingual "
                   "below the interval of half the full graph's; the average anchor's validation never reaches "
                   "twice chance; contrast-others above the interval of half the full graph's cross-lingual",
                   [v_a, v_b, v_c, v_d])


def shared_finding(j: Judge) -> Finding | None:
    """6. Shared encoders do worse than separate ones, ordered basic > seq > chan."""
    shared = [r for r in SHARED_RUNS[1:] if r in j.ev]
    if BASELINE not in j.ev or not shared:
        return None
    parts, verdicts = [], []
    for r in shared:
        v = j.judged([BASELINE, r], lambda: V.one_run_against_seeds(j.s(r, "all"), j.seeds("all"),
                                                                    expect_positive=False))
        verdicts.append(v)
        parts.append(f"{r} {100 * j.s(r, 'all'):.2f} ({v.verdict})")
    order = [r for r in ("shared-basic", "shared-seq", "shared-chan") if r in j.ev]
    for a, b in zip(order, order[1:]):
        v = j.judged([a, b], lambda: V.two_single_runs(j.s(a, "all"), j.s(b, "all"), j.sd("all"), j.n_seeds))
        verdicts.append(v)
        parts.append(f"{a} > {b}: {v.verdict}")
    pv = {k: paper_mean("table5_1", k, IMAGE_PAIRS + CROSS_PAIRS) for k in SHARED_RUNS}
    return finding("6. Shared encoders do worse than separate ones, ordered basic > sequence embedding > "
                   "channel embedding (Table 5.1)",
                   "all-pairs mean avgR10: " + ", ".join(f"{paper_header('table5_1', k)} {100 * v:.2f}"
                                                        for k, v in pv.items()),
                   f"all-pairs mean avgR10: separate {100 * j.seed_mean('all'):.2f} (seed mean); " + "; ".join(parts),
                   "each shared variant (one seed) below the 95% prediction interval of separate encoders' "
                   "seeds; basic > seq > chan (single runs) beyond t(0.975, n-1) x sqrt(2) x the seeds' sd",
                   verdicts)


def check_findings(ev: dict, noise: dict | None, chosen: str | None, chance: float,
                   oracle: dict | None = None) -> list[Finding]:
    """The thesis's six findings (the issue's list), each a Claim with the thesis's numbers, ours, the
    rule and a verdict from the shared statistical rule (vgs/report/verdicts.py): holds, does not hold,
    within noise, or untested (a run it rests on never reached twice chance on validation). A finding
    whose runs were not evaluated is left out."""
    j = Judge(ev, noise, chance)
    found = [hyperspheric_finding(j), objectives_finding(j, chosen), crosslingual_finding(j, chosen, oracle),
             mhsa_finding(j), schemes_finding(j), shared_finding(j)]
    return [f for f in found if f is not None]


def noise_mean(noise: dict | None, ev: dict, group: str) -> float:
    """The baseline's seed mean (its one run without seeds)."""
    return noise["summary"][group]["mean"] if noise else _s(ev, BASELINE, group)


# -- figures ---------------------------------------------------------------------------------------
def validation_rows(ev: dict) -> list[dict]:
    """validation.csv: every run's validation recall per epoch (the curves' numbers)."""
    return [{"run": run, "epoch": h["epoch"], "val_avgR10": h["val_avgR10"], "val_image_avgR10": h["val_image_avgR10"],
             "val_crosslingual_avgR10": h["val_crosslingual_avgR10"]} for run, e in ev.items() for h in e["history"]]


def validation_figures(ev: dict, out: Path, chosen: str | None, noise_runs: list[str]) -> list[str]:
    """One figure of validation curves per group of tables (and the baseline's seeds); their names."""
    written = []
    groups = dict(FIGURE_GROUPS)
    if noise_runs:
        groups["validation_seeds"] = ("the baseline's seeds (noise floor)", tuple(noise_runs))
    for name, (title, runs) in groups.items():
        runs = [chosen if r == CHOSEN_HYPERSPHERIC else r for r in runs]
        curves = {}
        for r in runs:
            if r is None or r not in ev or not ev[r]["history"]:
                continue
            h = ev[r]["history"]
            curves[r] = {"epochs": [x["epoch"] for x in h],
                         "series": {"all pairs": [x["val_avgR10"] for x in h],
                                    "image": [x["val_image_avgR10"] for x in h],
                                    "cross-lingual": [x["val_crosslingual_avgR10"] for x in h]},
                         "chosen": ev[r]["best_epoch"]}
        if curves:
            plot_validation_curves(curves, out / f"{name}.png", title=f"Validation mean avgR10 per epoch: {title}; "
                                   "chosen epoch circled", ylabel="validation avgR10")
            written.append(f"{name}.png")
    return written


def bars_rows(ev: dict, chosen: str | None) -> list[dict]:
    """Table 3.3's mean avgR10 per objective, in percent (table3_3_bars.csv without its noise column)."""
    return [{"objective": LABELS.get(r, r), "run": r, "image_avgR10": pct(_s(ev, r, "image")),
             "crosslingual_avgR10": pct(_s(ev, r, "crosslingual")), "all_avgR10": pct(_s(ev, r, "all"))}
            for r in objective_runs(ev, chosen)]


def draw_objectives_bars(rows: list[dict], ev: dict, noise: dict | None, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * len(rows) + 1.6))
    y = np.arange(len(rows))
    h = 0.38
    for off, g, color in ((-h / 2, "image", "tab:blue"), (h / 2, "crosslingual", "tab:orange")):
        ax.barh(y + off, [r[f"{g}_avgR10"] for r in rows], height=h, color=color, label=f"{GROUP_NAMES[g]} pairs")
        if noise is not None and BASELINE in ev:
            m, s = 100 * _s(ev, BASELINE, g), 100 * noise["summary"][g]["std"]
            ax.axvspan(m - 2 * s, m + 2 * s, color=color, alpha=0.12)
            ax.axvline(m, color=color, linestyle=":", linewidth=1)
    ax.set_yticks(y, [r["objective"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("test mean avgR10 (%)")
    note = ("shaded: InfoNCE +- 2 std of the baseline's seeds (within noise)" if noise is not None
            else "no noise floor (fewer than two seeds)")
    ax.set_title(f"Table 3.3: objectives; {note}", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    save_figure(fig, path)


def tsne_figure(cfg: RunConfig, settings: dict, out: Path, emb_dir=None) -> dict | None:
    """t-SNE of the run's four views' test embeddings (one joint projection), coloured by the digit at
    one grid position of the scene, marker by view."""
    from vgs.eval.oracle import _scenes_in_order, scene_labels_root
    from vgs.eval.tsne import joint_tsne
    from vgs.store.feature_store import FeatureStore
    from vgs.store.embeddings import read_embeddings

    path = Path(emb_dir or embeddings_dir(cfg.run)) / "test.h5"
    if not path.exists():
        return None
    views = cfg.data.views
    test = read_embeddings(path, views)
    ids = test[views[0]]["ids"]
    pick = np.sort(np.random.default_rng(0).permutation(len(ids))[:settings["tsne_scenes"]])
    digits = np.zeros(len(pick), dtype=np.int64)
    position = settings["tsne_position"]
    if scene_labels_root(cfg.data.corpus_root) is not None:
        corpus = FeatureStore(test[views[0]]["attrs"]["store"]).corpus
        scenes = _scenes_in_order(cfg.data.corpus_root, ids[pick], corpus)
        digits = np.array([int(np.asarray(s["grid"]).reshape(-1)[position]) for s in scenes])
    xy = joint_tsne([test[v]["embedding"][pick] for v in views], seed=0)
    fig, ax = plt.subplots(figsize=(6.5, 5.8))
    cmap = plt.get_cmap("tab10")
    markers = ["o", "^", "s", "x", "D", "v"]
    for v, pts, marker in zip(views, xy, markers):
        ax.scatter(pts[:, 0], pts[:, 1], c=[cmap(int(d) % 10) for d in digits], marker=marker, s=12,
                   linewidths=0.6 if marker == "x" else 0, alpha=0.8)
    handles = [plt.Line2D([], [], marker=m, linestyle="", color="k", label=v) for v, m in zip(views, markers)]
    handles += [plt.Line2D([], [], marker="o", linestyle="", color=cmap(d), label=str(d)) for d in range(10)]
    ax.legend(handles=handles, fontsize=7, ncol=2, loc="best", title=f"view / digit at position {position}")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE of {cfg.run}'s test embeddings ({len(pick)} scenes x {len(views)} views)", fontsize=9)
    save_figure(fig, out / "tsne.png")
    plot_tsne_grid([(cfg.run, {v: {"xy": pts, "labels": digits} for v, pts in zip(views, xy)})],
                   out / "tsne_views.png", columns=views, title=f"digit at position {position}")
    return {"run": cfg.run, "scenes": int(len(pick)), "position": position}



# -- the report ------------------------------------------------------------------------------------
LOSS_KEYS = {"hyperspheric": ("lambda_unif",), "triplet": ("margin", "negatives"), "infonce": ("temperature",),
             "mms": ("margin",), "mms_scheduled": ("initial_margin", "growth", "every"), "mms_adaptive": ("alpha",)}
RUNS_COLUMNS = ["run", "loss", "pooling", "scheme", "encoders", "lr", "dropout", "seed", "parameters", "best_epoch",
                "still_rising",
                "val_avgR10", "image_avgR10", "crosslingual_avgR10", "image_MRR", "crosslingual_MRR",
                "image_nDCG10", "crosslingual_nDCG10", "zero_embeddings"]
TIME_COLUMNS = ["run", "steps", "train_wall_s", "train_cpu_s", "export_wall_s", "evaluate_wall_s"]
VALIDATION_COLUMNS = ["run", "epoch", "val_avgR10", "val_image_avgR10", "val_crosslingual_avgR10"]
BARS_COLUMNS = ["objective", "run", "image_avgR10", "crosslingual_avgR10", "all_avgR10", "noise_2std"]
TITLE = "Crabtree 2021: trilingual visually grounded speech - losses, pooling, multiview training, shared encoders"
INTRO = ("Tables 3.1-5.1 of Crabtree's thesis with the thesis's value beside ours cell by cell, and its six findings "
         "judged on our runs. Every number of ours is read from the crabtree2021 evaluate stage "
         "(data/eval/crabtree2021/<run>.json, one per run); the thesis's from `vgs/methods/crabtree2021/paper.py`.")


@dataclass(frozen=True)
class Inputs:
    """What every part of the report reads: the runs' configs and evaluations, and what follows."""
    configs: list[RunConfig]
    ev: dict[str, dict]
    settings: dict
    data: str
    pair_keys: dict
    n_test: int
    chance: float
    noise: dict | None
    chosen: str | None          # Table 3.3's hyperspheric run: the best validation recall of Table 3.1
    pretrain: dict | None = None   # crabtree2021-pretrain's summary (pretrain.json), when it ran

    @property
    def by_run(self) -> dict[str, RunConfig]:
        return {c.run: c for c in self.configs}

    @property
    def first(self) -> dict:
        return next(iter(self.ev.values()))


def load_inputs(configs: list[RunConfig], settings: dict, eval_dir=None, pretrain_file=None) -> Inputs:
    ev = load_evaluations(configs, eval_dir)
    pretrain_file = Path(pretrain_file or pretrain_dir() / SUMMARY_FILE)
    first = next(iter(ev.values()))
    pair_keys = view_pair_keys(configs[0].data)
    metric_rows = [(p, k) for g in ("image", "crosslingual") for p in pair_keys[g] for k in KS]
    hs = [r for r in HSPHERE_RUNS if r in ev]
    return Inputs(configs=configs, ev=ev, settings=settings, data=configs[0].data.data_name or first["data"],
                  pair_keys=pair_keys, n_test=first["test_pairs"], chance=10 / first["test_pairs"],
                  noise=noise_floor(ev, {c.run: c for c in configs}, settings["noise_runs"], metric_rows),
                  chosen=max(hs, key=lambda r: ev[r]["val_avgR10"]) if hs else None,
                  pretrain=json.loads(pretrain_file.read_text()) if pretrain_file.is_file() else None)


def describe(c: RunConfig) -> dict:
    """What a run is, in the words of the tables (the run list)."""
    loss = c.loss.name + "".join(f" {k}={c.loss.params[k]}" for k in LOSS_KEYS.get(c.loss.name, ()))
    conditioning = c.model.language_conditioning
    return {"run": c.run, "loss": loss, "pooling": c.model.pooling, "scheme": c.train.scheme,
            "encoders": c.model.encoders + ("" if conditioning is None else f" ({conditioning})"),
            "lr": f"{c.train.lr:g}", "dropout": c.model.dropout if c.model.pooling != "avg" else None, "seed": c.seed}


def parameter_rows(ev: dict, paper_configs: dict[str, RunConfig] | None) -> dict[str, dict]:
    """Table 5.1's parameter rows: trained models, and the same structures at paper scale."""
    from vgs.methods.crabtree2021.model import count_structure, input_sizes

    rows = {"speech parameters": {r: ev[r]["parameters"]["speech"] for r in SHARED_RUNS if r in ev},
            "total parameters": {r: ev[r]["parameters"]["total"] for r in SHARED_RUNS if r in ev}}
    if paper_configs:
        rows["speech parameters at paper scale"] = {
            r: count_structure(pc.model, pc.data.caption_views, input_sizes(pc))["speech"]
            for r, pc in paper_configs.items()
            if r in SHARED_RUNS}
    return rows


@dataclass(frozen=True)
class ThesisTable:
    csv: Table                  # every column, written to <name>.csv
    blocks: list                # report.md: heading, legend, the table without `data`, the "against" line
    columns: dict[str, str]     # {our run: the thesis's column key}


def thesis_table(inp: Inputs, name: str, title: str, groups, params_rows: dict | None) -> ThesisTable | None:
    rows, columns, cols = build_table(name, groups, inp.ev, inp.pair_keys, inp.chosen, inp.data, params_rows)
    if not cols:
        return None
    reference = inp.chosen if name in ("table3_1", "table3_2") else BASELINE
    legend = "; ".join(f"`{run}` = thesis column \"{paper_header(name, key)}\"" for key, run in cols)
    blocks = [f"### {title}",
              f"Data: {inp.data}. Columns: {legend}. Cells avgR@k in %; `oracle` is the best any model can reach "
              "on this test set.",
              Table(name, rows, [c for c in columns if c != "data"], digits=2, csv=False)]
    against = against_line(cols, inp.ev, reference, inp.noise, groups)
    return ThesisTable(Table(name, rows, columns, digits=2), blocks + ([against] if against else []),
                       {run: key for key, run in cols})


def thesis_tables(inp: Inputs, paper_configs: dict[str, RunConfig] | None) -> list[tuple[str, ThesisTable]]:
    params_rows = parameter_rows(inp.ev, paper_configs)
    made = [(name, thesis_table(inp, name, title, groups, params_rows if name == "table5_1" else None))
            for name, title, groups in TABLES]
    return [(name, t) for name, t in made if t is not None]


def noise_blocks(noise: dict | None) -> list:
    if noise is None:
        return ["Fewer than two seed runs of the baseline were evaluated: no noise floor, so no difference is "
                "marked \"within noise\"."]
    n = len(noise["runs"])
    two_runs = V.t_quantile(n - 1) * math.sqrt(2)
    text = (f"The baseline (full-graph InfoNCE, average pooling, separate encoders) trained with seeds "
            f"{noise['seeds']} (runs {', '.join(noise['runs'])}). Every verdict of this report (the findings "
            "above, the \"within noise\" marks below) follows one rule at the "
            "95% level (vgs/report/verdicts.py): a configuration trained with one seed is compared with the "
            "baseline's 95% prediction interval (t with n-1 degrees of freedom), two single runs differ when "
            f"they are more than t(0.975, {n - 1}) x sqrt(2) = {two_runs:.2f} seed standard deviations apart, "
            "and a claim resting on a run whose validation recall never reached twice chance is untested. "
            f"With {n} seeds the intervals are wide: the standard deviation itself is known only to within "
            "a factor of several.")

    def row(metric, s):
        return {"metric": metric, "seeds": ", ".join(f"{100 * v:.2f}" for v in s["values"]),
                "mean": 100 * s["mean"], "std": 100 * s["std"], "two runs differ beyond": 100 * two_runs * s["std"]}

    rows = [row(f"mean {GROUP_NAMES.get(g, 'all-pairs')} avgR10", s) for g, s in noise["summary"].items()]
    rows += [row(m, s) for m, s in noise["cells"].items()]
    return [text, Table("noise_floor", rows, ["metric", "seeds", "mean", "std", "two runs differ beyond"], digits=2,
                        csv=False)]


def setup_blocks(inp: Inputs) -> list[str]:
    c0 = inp.configs[0]
    t, m = c0.train, c0.model
    return [
        f"{inp.n_test} test datapoints (image + one caption per language). Profile `{c0.profile}`. "
        f"Adam, batch {t.batch_size}, lr {t.lr:g} (MHSA runs as in their tables) with linear warm-up over the first "
        f"{100 * t.warmup_fraction:g}% of steps, then x{t.lr_decay:g} every {t.lr_decay_every} steps; in-batch "
        f"negatives; {t.epochs} epochs. " + image_init_text(m.image_net, m.image_init, inp.pretrain) + " Speech: ResDAVEnet "
        f"(`{m.speech_net}`" + (f", widths {list(m.speech_widths)}" if m.speech_widths else "")
        + f") on 40 log-mel bins, embedding {m.embed_dim}. Similarity: the dot product of the embeddings "
        + ("as they are (the thesis)" if m.embedding_norm is None else
           f"L2-normalised to norm {m.embedding_norm:.4g} (a deviation of this profile: the thesis learns the "
           "norm, and unnormalised InfoNCE stays at chance within the CPU budget)")
        + "; hyperspheric runs use the unit sphere." + pretraining_effect(inp),
        "**Epoch selection**: the epoch with the best mean avgR10 over all six view pairs on the validation split; "
        "the test split is scored once, at that epoch. The thesis had no validation split and picked its epochs on "
        "test; we do not. Table 3.3's hyperspheric column is the lambda_unif whose run has the best validation "
        f"recall (ours: `{inp.chosen}`; the thesis chose 0.75).",
        f"Chance avgR10 is {100 * inp.chance:.2f}% ({inp.n_test} candidates). The thesis used 100,000 Places images "
        "with spoken English, Hindi and Japanese captions; digitscenes is tiny in comparison and has a ten-word "
        "vocabulary, so our recall values are not comparable with the thesis's, only its findings are. Method "
        "details and every deviation: `vgs/methods/crabtree2021/README.md`.",
    ]


def image_init_text(image_net: str, image_init: str, pretrain: dict | None) -> str:
    if image_init == "scratch":
        return (f"Image encoder: ResNet (`{image_net}`) trained from scratch - a deviation: the thesis starts from "
                "ImageNet weights, which are not available offline.")
    done = "" if pretrain is None or not pretrain.get("used") else (
        f" ({pretrain['config']['steps']} steps of {pretrain['config']['batch_size']} digits; "
        f"{100 * pretrain['val_accuracy']:.1f}% accuracy on {pretrain['val_items']} held-out MNIST validation digits)")
    return (f"Image encoder: ResNet (`{image_net}`) whose trunk starts from weights pretrained once on the ten MNIST "
            f"digit classes{done}, in its own stage (`crabtree2021-pretrain`), shared by every run - the CPU analogue "
            "of the thesis's ImageNet initialisation (no ImageNet weights offline; MNIST's training split only, "
            "so no evaluated scene's digits were seen). Everything is then trained on the retrieval task.")


def pretraining_effect(inp: Inputs) -> str:
    """What the pretrained trunk buys: the baseline beside `image-scratch`, the same run from scratch."""
    if SCRATCH_RUN not in inp.ev or BASELINE not in inp.ev:
        return ""
    b, s = inp.ev[BASELINE], inp.ev[SCRATCH_RUN]
    return (f" The run `{SCRATCH_RUN}` is the baseline with its image trunk trained from scratch: test mean avgR10 "
            f"{100 * s['summary']['image']:.2f}% image and {100 * s['summary']['crosslingual']:.2f}% cross-lingual "
            f"against the baseline's {100 * b['summary']['image']:.2f}% and {100 * b['summary']['crosslingual']:.2f}% "
            f"(one seed each; best validation epoch {s['best_epoch']} vs {b['best_epoch']}).")


def runs_table(inp: Inputs) -> Table:
    rows = []
    for c in inp.configs:
        e = inp.ev[c.run]
        rows.append({**describe(c), "parameters": e["parameters"]["total"], "best_epoch": e["best_epoch"],
                     "still_rising": "yes" if V.still_rising([h["val_avgR10"] for h in e["history"]]) else "no",
                     "val_avgR10": pct(e["val_avgR10"]), "image_avgR10": pct(e["summary"]["image"]),
                     "crosslingual_avgR10": pct(e["summary"]["crosslingual"]),
                     **rank_scores(e["recall"], c),
                     "zero_embeddings": sum(e.get("zero_embeddings", {}).values())})
    return Table("runs", rows, RUNS_COLUMNS, digits=2)


def rank_scores(recall: dict[str, dict], cfg: RunConfig) -> dict[str, float | None]:
    """MRR and nDCG@10 (%), averaged over both directions and over the image pairs and the
    cross-lingual pairs as avgR10 is: the scores today's retrieval benchmarks report (MTEB's main
    score is nDCG@10), so a run can be placed beside them. None for an evaluation made before
    they were computed."""
    groups = view_pair_keys(cfg.data)
    out = {}
    for score in ("MRR", "nDCG10"):
        for group in ("image", "crosslingual"):
            values = [recall[pair].get(f"avg{score}") for pair in groups[group]]
            out[f"{group}_{score}"] = (pct(sum(values) / len(values))
                                       if values and None not in values else None)
    return out


def timing_rows(ev: dict) -> list[dict]:
    """Each stage's own measurements per run, and their sums."""
    rows = []
    for run, e in ev.items():
        t = e["timing"]
        rows.append({"run": run, "steps": t["train_steps"], "train_wall_s": t["train_wall_seconds"],
                     "train_cpu_s": t["train_cpu_seconds"], "export_wall_s": t.get("export_wall_seconds"),
                     "evaluate_wall_s": t.get("evaluate_wall_seconds")})
    totals = {k: sum(r[k] or 0 for r in rows) for k in ("train_wall_s", "train_cpu_s", "export_wall_s",
                                                        "evaluate_wall_s")}
    return rows + [{"run": "all runs", "steps": sum(r["steps"] for r in rows), **totals}]


def span_minutes(ev: dict) -> float | None:
    """From the first training start to now (this report)."""
    starts = [e["timing"].get("train_started_at") for e in ev.values() if e["timing"].get("train_started_at")]
    return (time.time() - min(starts)) / 60 if starts else None


def time_blocks(rows: list[dict], span: float | None, report_seconds: float) -> list:
    blocks = [Table("time", rows, TIME_COLUMNS, digits=1, csv=False)]
    if span is not None:
        blocks.append(f"From the first training start to this report: {span:.1f} min (the budget for the whole "
                      f"paper in the cpu profile: {BUDGET_MINUTES} min; meaningful when all runs were trained in one "
                      "`dvc repro`). It includes each stage's start-up, which the per-stage columns leave out.")
    return blocks + [f"Hardware: {hardware_summary()}. Report built in {report_seconds:.1f} s."]


@dataclass(frozen=True)
class Figures:
    curves: list[str]           # validation_*.png
    validation: Table           # validation.csv: the curves' numbers
    bars: Table                 # table3_3_bars.csv (no rows: no figure)
    tsne: dict | None


def draw_figures(inp: Inputs, out: Path, emb_dir=None) -> Figures:
    curves = validation_figures(inp.ev, out, inp.chosen, inp.settings["noise_runs"])
    bars = bars_rows(inp.ev, inp.chosen)
    if bars:
        draw_objectives_bars(bars, inp.ev, inp.noise, out / "table3_3_bars.png")
    for r in bars:
        r["noise_2std"] = None if inp.noise is None else pct(2 * inp.noise["summary"]["all"]["std"])
    tsne_run = inp.settings["tsne_run"]
    tsne = None
    if tsne_run in inp.by_run:
        tsne = tsne_figure(inp.by_run[tsne_run], inp.settings, out,
                           emb_dir=Path(emb_dir) / tsne_run if emb_dir else None)
    return Figures(curves, Table("validation", validation_rows(inp.ev), VALIDATION_COLUMNS, digits=4),
                   Table("table3_3_bars", bars, BARS_COLUMNS, digits=2), tsne)


def figure_blocks(figs: Figures) -> list:
    blocks = [Figure(f, f) for f in figs.curves]
    if figs.bars.rows:
        blocks += ["Table 3.3 as bars (test mean avgR10), with the baseline's noise floor:",
                   Figure("table3_3_bars.png", "Table 3.3 bars")]
    if figs.tsne:
        t = figs.tsne
        blocks += [f"t-SNE of `{t['run']}`'s test embeddings, {t['scenes']} scenes, all four views in one "
                   f"projection; colour: the digit at grid position {t['position']} of the scene, marker: the "
                   "view. Where the languages meet the image, markers of one colour cluster together.",
                   Figure("tsne.png", "t-SNE"), Figure("tsne_views.png", "t-SNE per view")]
    return blocks


def headline(inp: Inputs) -> dict:
    """runs.csv's two summary columns, in percent as it prints them, per configuration. The baseline's
    extra seeds enter only as the noise floor (their runs stay in details.json)."""
    noise = inp.noise
    extra_seeds = set(noise["runs"][1:]) if noise is not None else set()
    metrics = {run: {col: table_number(pct(e["summary"][g]), 2)
                     for col, g in (("image_avgR10", "image"), ("crosslingual_avgR10", "crosslingual"))}
               for run, e in inp.ev.items() if run not in extra_seeds}
    if noise is not None:
        metrics["noise_floor"] = {f"{g}_avgR10_{stat}": table_number(pct(noise["summary"][g][stat]), 2)
                                  for g in ("image", "crosslingual") for stat in ("mean", "std")}
    # A group without view pairs (one caption language: no cross-lingual pair) has no number.
    return {run: {k: v for k, v in cells.items() if v is not None} for run, cells in metrics.items()}


def details(inp: Inputs, tables: list[tuple[str, ThesisTable]], findings: list[Finding], figs: Figures,
            time_rows: list[dict], span: float | None) -> dict:
    """details.json without the claims and the data (the renderer adds both)."""
    first, by_run = inp.first, inp.by_run
    out = {"profile": inp.configs[0].profile, "test_pairs": inp.n_test, "chance_R10": inp.chance,
           "chosen_hyperspheric": inp.chosen, "noise_floor": inp.noise,
           "claims_resting_on_one_seed": [f.claim.name for f in findings if f.rests_on_one_seed],
           "tables": {name: {"columns": t.columns, "rows": t.csv.rows} for name, t in tables},
           "oracle": first["oracle"], "oracle_summary": first.get("oracle_summary"), "tsne": figs.tsne,
           "span_minutes": span, "timing": time_rows,
           "runs": {run: {"config": by_run[run].fingerprint_config(), "best_epoch": e["best_epoch"],
                          "val_avgR10": e["val_avgR10"], "recall": e["recall"], "summary": e["summary"],
                          "parameters": e["parameters"], "timing": e["timing"]} for run, e in inp.ev.items()}}
    return json.loads(json.dumps(out, default=str))      # configs hold tuples and paths


def build_report(configs: list[RunConfig], settings: dict, out_dir=None, eval_dir=None,
                 emb_dir=None, paper_configs: dict[str, RunConfig] | None = None) -> PaperReport:
    """The report of the runs' evaluations, its figures already drawn into `out_dir` (the renderer
    writes the rest: `write_report`). `paper_configs` ({run: the paper profile's config}) adds
    paper-scale parameter counts to Table 5.1."""
    started = time.perf_counter()
    out = Path(out_dir or results_dir(METHOD))
    out.mkdir(parents=True, exist_ok=True)
    inp = load_inputs(configs, settings, eval_dir)
    tables = thesis_tables(inp, paper_configs)
    findings = check_findings(inp.ev, inp.noise, inp.chosen, inp.chance, inp.first.get("oracle_summary"))
    figs = draw_figures(inp, out, emb_dir)
    runs = runs_table(inp)
    time_rows, span = timing_rows(inp.ev), span_minutes(inp.ev)
    sections = [
        Section("Setup", setup_blocks(inp)),
        Section("Noise floor", noise_blocks(inp.noise)),
        # Each thesis table's CSV keeps its `data` column; report.md shows the copy without it.
        Section("Tables", [b for _, t in tables for b in t.blocks] + [replace(t.csv, shown=False) for _, t in tables]),
        Section("Runs", ["One configuration per run; `baseline` is read by Tables 3.3, 4.1, 4.2 and 5.1. "
                         "`zero_embeddings`: test embeddings (of all four views) that are exactly zero - "
                         "average-pooled ReLU features that are all off, which a narrow encoder can produce; recall "
                         "scores each of them at chance (docs/retrieval-eval.md). `still_rising`: the last quarter of "
                         "the run's epochs raised its best validation recall by 10% of that best or more, so "
                         "longer training would likely change its numbers (vgs/report/verdicts.py `still_rising`).",
                         runs]),
        Section("Figures", figure_blocks(figs) + [replace(figs.validation, shown=False),     # the figures' data
                                                  replace(figs.bars, shown=False)]),
        Section("Time", time_blocks(time_rows, span, report_seconds=time.perf_counter() - started)),
    ]
    return PaperReport(
        paper=METHOD, title=TITLE, data=inp.data, intro=INTRO, claims=[f.claim for f in findings],
        headline=headline(inp), details=details(inp, tables, findings, figs, time_rows, span), sections=sections,
        claims_heading="The thesis's findings beside ours", headline_limit=HEADLINE_LIMIT)


def write_report(report: PaperReport, out_dir) -> list[str]:
    """results/crabtree2021/: the CSVs, metrics.json, details.json and report.md, by the shared renderer."""
    return render(report, out_dir)


def run_lines(report: PaperReport) -> list[str]:
    def cell(m: dict, key: str) -> str:
        return f"{m[key]:.2f}" if key in m else "n/a"    # no cross-lingual pair with one language

    return [f"  {run:>16}  mean avgR10 (%) image {cell(m, 'image_avgR10')}  cross-lingual {cell(m, 'crosslingual_avgR10')}"
            for run, m in report.headline.items() if run != "noise_floor"]


def stage(params: Params, progress: bool = True) -> str:
    """DVC stage crabtree2021-report: Tables 3.1-5.1, the validation curves, t-SNE, findings,
    metrics and report.md -> results/crabtree2021/."""
    from vgs.methods.crabtree2021.config import load_run_config, report_settings, run_names
    names = run_names(params)
    configs = [load_run_config(params, run) for run in names]
    # Table 5.1's parameter counts at paper scale: the same runs under the paper profile (not trained).
    paper = Params({**params.data, "profile": "paper"}, "", params.source)
    paper_configs = {run: load_run_config(paper, run) for run in SHARED_RUNS if run in names}
    out = results_dir(METHOD)
    report = build_report(configs, report_settings(params), out_dir=out, paper_configs=paper_configs)
    write_report(report, out)
    head, *claims = summary_lines(report, out)
    return "\n".join([head, *run_lines(report), *claims])
