"""Recall tables for the retrieval papers (Mortazavi 2020, Crabtree 2021): one writer of recall
cells, the oracle reference row and the validation-recall curve figure, shared by both reports.

Cells come from `RecallResult.as_row()` (vgs/eval/retrieval.py): per direction `a2b_R<k>` and
`b2a_R<k>`, and their mean `avgR<k>`. A table names directions in its own words through
`directions`, e.g. {"a2b": "i2s", "b2a": "s2i"} (image-to-speech, speech-to-image).
"""
from __future__ import annotations

from pathlib import Path

from matplotlib.ticker import MaxNLocator

from vgs.report.figures import plt, save_figure

KS = (1, 5, 10)
CHANCE_NOTE = "chance R@k is k/N: 1% for R@10 on 1,000 pairs"


# Beside R@k, the scores of today's retrieval benchmarks (vgs/eval/retrieval.py): MRR and nDCG@10.
RANK_SCORES = ("MRR", "nDCG10")


def recall_columns(directions: dict[str, str], ks=KS, mean: bool = True, suffix: str = "_ours",
                   ranking: bool = False) -> list[str]:
    cols = [f"{name}_R{k}{suffix}" for name in directions.values() for k in ks]
    if mean:
        cols += [f"avg_R{k}{suffix}" for k in ks]
    if ranking:
        cols += [f"{name}_{score}{suffix}" for score in RANK_SCORES
                 for name in [*directions.values(), *(["avg"] if mean else [])]]
    return cols


def recall_cells(row: dict | None, directions: dict[str, str], ks=KS, mean: bool = True,
                 suffix: str = "_ours", ranking: bool = False) -> dict:
    """{column: value} of one RecallResult row; empty cells when `row` is None (e.g. no oracle)
    or, for MRR and nDCG@10, when the row has none (an oracle's)."""
    cells = {}
    for key, name in directions.items():
        for k in ks:
            cells[f"{name}_R{k}{suffix}"] = None if row is None else row[f"{key}_R{k}"]
    if mean:
        for k in ks:
            cells[f"avg_R{k}{suffix}"] = None if row is None else row[f"avgR{k}"]
    if ranking:
        for score in RANK_SCORES:
            for key, name in directions.items():
                cells[f"{name}_{score}{suffix}"] = None if row is None else row.get(f"{key}_{score}")
            if mean:
                cells[f"avg_{score}{suffix}"] = None if row is None else row.get(f"avg{score}")
    return cells


def oracle_note(oracle_row: dict | None) -> str:
    if oracle_row is None:
        return "The corpus has no scene labels, so no oracle recall is defined (exact matches only)."
    return (f"Oracle (the best any model can reach, because a caption may fit several test images): "
            f"R@1 {oracle_row['avgR1']:.3f}, R@5 {oracle_row['avgR5']:.3f}, R@10 {oracle_row['avgR10']:.3f}.")


def plot_validation_curves(curves: dict[str, dict], path: str | Path, title: str,
                           ylabel: str = "validation R@10") -> None:
    """One panel per run: validation recall per epoch (one line per direction), the chosen epoch
    marked with a dot and any warm restart with a dashed line.

    curves: {run: {"epochs": [...], "series": {label: [...]}, "chosen": epoch, "restart_at": epoch|None}}
    """
    n = len(curves)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    # Constrained layout keeps the figure title clear of the panel titles below it.
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.7 * rows + 0.4), squeeze=False, sharey=True,
                             layout="constrained")
    for ax, (run, c) in zip(axes.flat, curves.items()):
        for label, values in c["series"].items():
            ax.plot(c["epochs"], values, marker=".", label=label)
        if c.get("chosen") is not None:
            chosen = c["epochs"].index(c["chosen"])
            ax.scatter([c["chosen"]], [list(c["series"].values())[0][chosen]], s=60, facecolors="none",
                       edgecolors="k", zorder=3, label="chosen epoch")
        if c.get("restart_at"):
            ax.axvline(c["restart_at"] - 0.5, color="grey", linestyle="--", linewidth=1, label="warm restart")
        ax.set_title(run, fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes[0][0].set_ylabel(ylabel)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
