"""Figures 4-5: style transfer within a modality and controlled cross-modal generation.

Every grid has the same layout. The top row shows the examples that give z_s (one per digit, so
each column is one digit). The left column shows the examples that give the style latent (one row
per style). Cell (r, c) is decoded from z_s of column c and the style of row r. The digit should
stay the same down a column and the style should stay the same along a row. Speech is drawn as
fbank images (time to the right, mel bins upwards), padded to a common width so that duration shows.
A generated utterance has the length of its style example, because duration is part of the style.

All latents are unimodal posterior means of test-split examples, chosen with the seed.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from vgs.methods.pvae2018.data import DigitData  # noqa: E402
from vgs.methods.pvae2018.figures import FIGURES  # noqa: E402
from vgs.methods.pvae2018.model import AUDIO, IMAGE, MultimodalVAE  # noqa: E402
from vgs.params import Params  # noqa: E402
from vgs.train.device import current  # noqa: E402
from vgs.utils.atomic import atomic_path  # noqa: E402

STYLE = {AUDIO: "a", IMAGE: "i"}


def pick_examples(data: DigitData, seed: int, num_styles: int = 6) -> dict:
    """Test items: one per digit 0-9 for z_s; style rows (speech: one per speaker) of random digits."""
    rng = np.random.default_rng([seed, 45])
    out = {}
    for m in (AUDIO, IMAGE):
        idx = data.split(m, "test")
        labels = data.labels(m, idx)
        semantic = np.array([rng.choice(idx[labels == d]) for d in range(10)])
        if m == AUDIO:
            speakers = data.audio_store.speakers[idx]
            names = sorted(set(speakers.tolist()))[:num_styles]
            style = np.array([rng.choice(idx[speakers == s]) for s in names])
        else:
            style = rng.choice(idx, size=num_styles, replace=False)
        out[m] = {"semantic": semantic, "style": style}
    return out


@torch.no_grad()
def _posterior_means(model: MultimodalVAE, data: DigitData, modality: str, indices) -> dict[str, torch.Tensor]:
    compute = current()
    batch = compute.to(data.batch(indices if modality == AUDIO else None, indices if modality == IMAGE else None))
    with compute.autocast():
        return {name: mean for name, (mean, _) in model.infer_unimodal(modality, batch).items()}


@torch.no_grad()
def generate_grid(model: MultimodalVAE, data: DigitData, source: str, target: str, semantic_idx, style_idx
                  ) -> list[list[np.ndarray]]:
    """cells[r][c]: `target` output from z_s of semantic_idx[c] (a `source` item) and the style of
    style_idx[r] (a `target` item); denormalised (fbank (T, D) or image (H, W))."""
    compute = current()
    model.eval()
    zs = _posterior_means(model, data, source, semantic_idx)["s"]
    style = _posterior_means(model, data, target, style_idx)[STYLE[target]]
    cells = []
    for r in range(len(style_idx)):
        latents = {"s": zs, STYLE[target]: style[r].expand(len(semantic_idx), -1)}
        with compute.autocast():
            if target == AUDIO:
                n = len(data.audio[int(style_idx[r])])
                out = model.decode(AUDIO, latents, compute.to(torch.full((len(semantic_idx),), n, dtype=torch.int64)))
            else:
                out = model.decode(IMAGE, latents)
        denormalise = data.denormalise_audio if target == AUDIO else data.denormalise_image
        cells.append([denormalise(o) for o in out.float().cpu()])
    return cells


def _show(ax, item: np.ndarray, modality: str, width: int, vmin: float, vmax: float) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if modality == IMAGE:
        ax.imshow(item, cmap="gray_r", vmin=0, vmax=1)
        return
    canvas = np.full((item.shape[1], width), np.nan)
    canvas[:, :min(width, len(item))] = item[:width].T
    cmap = plt.get_cmap("magma").with_extremes(bad="white")
    ax.imshow(canvas, origin="lower", aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax)


def draw_grid(path: str | Path, cells, source: str, target: str, semantic_items, style_items,
              semantic_labels, title: str) -> None:
    rows, cols = len(cells), len(cells[0])
    audio_items = [c for row in cells for c in row] if target == AUDIO else []
    audio_items += [x for x in semantic_items] if source == AUDIO else []
    audio_items += [x for x in style_items] if target == AUDIO else []
    width = max([len(a) for a in audio_items], default=1)
    flat = np.concatenate([a.ravel() for a in audio_items]) if audio_items else np.zeros(1)
    vmin, vmax = (np.percentile(flat, 2), np.percentile(flat, 99.8)) if audio_items else (0, 1)
    cell_w = 1.1 if (target == AUDIO or source == AUDIO) else 0.9
    fig, axes = plt.subplots(rows + 1, cols + 1, figsize=(cell_w * (cols + 1), 0.95 * (rows + 1)),
                             gridspec_kw={"wspace": 0.06, "hspace": 0.06})
    axes[0, 0].axis("off")
    axes[0, 0].text(0.5, 0.5, "style \u2193 / z_s \u2192", ha="center", va="center", fontsize=7)
    for c in range(cols):
        _show(axes[0, c + 1], semantic_items[c], source, width, vmin, vmax)
        axes[0, c + 1].set_title(f"digit {semantic_labels[c]}", fontsize=7)
        for spine in axes[0, c + 1].spines.values():
            spine.set_color("tab:blue")
            spine.set_linewidth(1.5)
    for r in range(rows):
        _show(axes[r + 1, 0], style_items[r], target, width, vmin, vmax)
        for spine in axes[r + 1, 0].spines.values():
            spine.set_color("tab:orange")
            spine.set_linewidth(1.5)
        for c in range(cols):
            _show(axes[r + 1, c + 1], cells[r][c], target, width, vmin, vmax)
    fig.suptitle(title, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def _items(data: DigitData, modality: str, indices) -> list[np.ndarray]:
    if modality == AUDIO:
        return [data.audio[int(i)] for i in indices]
    return [data.images[int(i)] for i in indices]




def generation_figures(model: MultimodalVAE, data: DigitData, out_dir: str | Path, seed: int) -> dict:
    """Write the four grids; return which test items were used."""
    out_dir = Path(out_dir)
    chosen = pick_examples(data, seed)
    used = {}
    for name, (source, target, title) in FIGURES.items():
        sem, sty = chosen[source]["semantic"], chosen[target]["style"]
        cells = generate_grid(model, data, source, target, sem, sty)
        draw_grid(out_dir / name, cells, source, target, _items(data, source, sem), _items(data, target, sty),
                  data.labels(source, sem).tolist(), title)
        store = data.audio_store if source == AUDIO else data.image_store
        style_store = data.audio_store if target == AUDIO else data.image_store
        used[name] = {"semantic": store.ids[sem].tolist(), "style": style_store.ids[sty].tolist()}
    return used


GENERATING_MODEL = "pvae"   # the model whose style latents Figures 4 and 5 swap (dvc.yaml reads its run dir)


def stage(params: Params, progress: bool = True) -> str:
    """DVC stage pvae2018-generate: Figures 4 and 5 (style swaps, cross-modal generation) from the
    trained PVAE -> results/pvae2018/."""
    import torch

    from vgs.errors import VgsError
    from vgs.methods.pvae2018.config import RESULTS, load_data_config, model_dir
    from vgs.methods.pvae2018.data import DigitData, stats_from_model
    from vgs.methods.pvae2018.inference import load_trained
    from vgs.utils.atomic import atomic_write_json
    model, _ = load_trained(model_dir(GENERATING_MODEL))
    if model.spec.kind != "pvae":
        raise VgsError(f"generation figures need a PVAE model (z_s plus style latents); "
                       f"{GENERATING_MODEL} is {model.spec.kind}")
    data = DigitData(load_data_config(params))
    data.require_input_sizes(model.cfg, f"the checkpoint of {model_dir(GENERATING_MODEL)}")
    data.stats = stats_from_model(model)
    torch.manual_seed(params.int("seed"))
    used = generation_figures(model, data, RESULTS, seed=params.int("seed"))
    atomic_write_json(RESULTS / "generate.json", {"model": GENERATING_MODEL, "examples": used})
    return f"{RESULTS}: " + ", ".join(used)
