"""Figures shared by the per-paper reports: joint t-SNE grids and metric-vs-hyperparameter sweeps.

Matplotlib with the Agg backend (no display); every figure is written atomically.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vgs.utils.atomic import atomic_path  # noqa: E402


def save_figure(fig, path: str | Path, dpi: int = 130) -> None:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    plt.close(fig)


def plot_tsne_grid(rows: list[tuple[str, dict]], path: str | Path, columns: list[str] | None = None,
                   title: str | None = None) -> None:
    """One row per configuration, one panel per modality, points coloured by class.

    rows: [(row title, {modality: {"xy": (N, 2), "labels": (N,)}})]. All panels of a row come from
    one joint projection, so they share axis limits.
    """
    columns = columns or sorted(rows[0][1])
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(3.2 * len(columns), 2.9 * len(rows)),
                             squeeze=False)
    cmap = plt.get_cmap("tab10")
    for r, (row_title, panels) in enumerate(rows):
        xy_all = np.concatenate([np.asarray(panels[c]["xy"]) for c in columns])
        lo, hi = xy_all.min(0), xy_all.max(0)
        pad = 0.05 * (hi - lo + 1e-9)
        for c, name in enumerate(columns):
            ax = axes[r, c]
            xy = np.asarray(panels[name]["xy"])
            labels = np.asarray(panels[name]["labels"])
            ax.scatter(xy[:, 0], xy[:, 1], c=[cmap(int(k) % 10) for k in labels], s=7, linewidths=0)
            ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
            ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name)
            if c == 0:
                ax.set_ylabel(row_title)
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=cmap(k), label=str(k)) for k in range(10)]
    fig.legend(handles=handles, loc="upper center", ncol=10, bbox_to_anchor=(0.5, 1.0 + 0.25 / len(rows)),
               frameon=False, title=title)
    fig.tight_layout()
    save_figure(fig, path)


def plot_log_sweep(x: list[float], panels: list[dict], path: str | Path, xlabel: str,
                   zero_label: str = "0") -> None:
    """Metrics against a hyperparameter on a log x-axis, ours beside the paper's.

    panels: [{"title", "ylabel", "series": {label: [y per x or None]}, "ylim"?: (lo, hi),
    "hline"?: y}]. A value x = 0 cannot sit on a log axis: it is drawn in a separate narrow
    panel left of a visible axis break, marked `zero_label`.
    """
    x = np.asarray(x, dtype=float)
    has_zero = bool((x == 0).any())
    positive = x > 0
    fig = plt.figure(figsize=(5.6 * len(panels), 3.8))
    outer = fig.add_gridspec(1, len(panels), wspace=0.28)
    markers = ["o", "s", "^", "D"]
    for p, panel in enumerate(panels):
        if has_zero:
            inner = outer[p].subgridspec(1, 2, width_ratios=[1, 7], wspace=0.06)
            ax0 = fig.add_subplot(inner[0])
            ax = fig.add_subplot(inner[1], sharey=ax0)
        else:
            ax0, ax = None, fig.add_subplot(outer[p])
        for s, (label, ys) in enumerate(panel["series"].items()):
            y = np.asarray([np.nan if v is None else v for v in ys], dtype=float)
            style = {"marker": markers[s % len(markers)], "label": label,
                     "linestyle": "--" if "paper" in label.lower() else "-", "color": f"C{s}"}
            ax.plot(x[positive], y[positive], **style)
            if ax0 is not None:
                ax0.plot(np.zeros(int((~positive).sum())), y[~positive], **{**style, "linestyle": ""})
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_title(panel.get("title", ""))
        ax.grid(True, alpha=0.3)
        if "hline" in panel:
            for a in (ax, ax0):
                if a is not None:
                    a.axhline(panel["hline"], color="grey", linewidth=0.8, linestyle=":")
        if panel.get("ylim"):
            ax.set_ylim(*panel["ylim"])
        if ax0 is not None:
            ax0.set_xlim(-1, 1)
            ax0.set_xticks([0])
            ax0.set_xticklabels([zero_label])
            ax0.set_ylabel(panel.get("ylabel", ""))
            ax0.grid(True, alpha=0.3)
            ax0.spines["right"].set_visible(False)
            ax.spines["left"].set_visible(False)
            ax.tick_params(axis="y", which="both", left=False, labelleft=False)
            # Diagonal break marks between the x = 0 panel and the log axis.
            d = 0.015
            kw = {"color": "k", "clip_on": False, "linewidth": 0.8}
            ax0.plot((1 - d * 7, 1 + d * 7), (-d, d), transform=ax0.transAxes, **kw)
            ax0.plot((1 - d * 7, 1 + d * 7), (1 - d, 1 + d), transform=ax0.transAxes, **kw)
            ax.plot((-d, d), (-d, d), transform=ax.transAxes, **kw)
            ax.plot((-d, d), (1 - d, 1 + d), transform=ax.transAxes, **kw)
        else:
            ax.set_ylabel(panel.get("ylabel", ""))
        ax.legend(loc="best", fontsize=8)
    save_figure(fig, path)
