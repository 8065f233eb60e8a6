"""results/smart through the shared renderer (vgs/report/render.py): Table 1 (paper value beside
ours), the targets as claims, the conversion figure, the diagnostics and the run's time.

Everything here is specific to SMART: the rows of its tables, its three targets, its figure and
its text. The renderer writes the CSVs, metrics.json (headline + `claims.<key>`), details.json and
report.md."""
from __future__ import annotations

from pathlib import Path

from vgs.methods.smart import PAPER_ID, STYLES
from vgs.methods.smart.config import SAMPLES_FILE, eval_dir, load_record, load_samples
from vgs.methods.smart.paper import PAPER
from vgs.params import Params
from vgs.paths import results_dir
from vgs.report.metrics import table_number
from vgs.report.render import Claim, Figure, PaperReport, Section, Table, render, summary_lines, verdict_of
from vgs.report.tables import hardware_summary
from vgs.utils.atomic import atomic_path

COLUMNS = ["approach", "style", "data", "n_test", "acc_paper", "acc_ours"]
TARGETS = {"mlc": 0.98, "glc": 0.90, "conversion": 0.90}
DIGITS = 2
# plot_accuracy.csv: ours beside the paper's per judge and per style and direction, for `dvc plots show`.
PLOT_COLUMNS = ["conversion", "acc_ours", "acc_paper"]
DIRECTIONS = ("image_to_audio", "audio_to_image")
FIGURE = "conversions.png"


def _corpus_name(corpus: str) -> str:
    return {"mnist": "MNIST", "fsdd": "FSDD", "speechcommands": "Speech Commands"}.get(corpus, corpus)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _arrow(direction: str) -> str:
    return direction.replace("_to_", "->")


# -- Table 1 and the plot points ------------------------------------------------------------------
def table_rows(records: dict[str, dict]) -> list[dict]:
    first = next(iter(records.values()))
    img, aud = _corpus_name(first["image_corpus"]), _corpus_name(first["audio_corpus"])
    spk = first.get("audio_speakers")
    aud_test = f"{aud} test" + (f" ({spk} speakers)" if spk else "")
    judges = first["judges"]
    rows = [
        {"key": "mlc", "approach": "MNIST label classifier (MLC)", "style": "", "data": f"{img} test",
         "n_test": judges["mlc"]["test_items"], "acc_paper": PAPER["mlc"], "acc_ours": 100 * judges["mlc"]["test_acc"]},
        {"key": "glc", "approach": f"audio label classifier (GLC; paper: GCDD, ours: {aud})", "style": "",
         "data": aud_test, "n_test": judges["glc"]["test_items"], "acc_paper": PAPER["glc"],
         "acc_ours": 100 * judges["glc"]["test_acc"]},
    ]
    for style, rec in records.items():
        m = rec["metrics"]
        rows.append({"key": "image_to_audio", "approach": "image -> E_I -> T_I->A -> D_A -> GLC", "style": style,
                     "data": f"{img} test", "n_test": m["image_to_audio_test_items"],
                     "acc_paper": PAPER[(style, "image_to_audio")], "acc_ours": 100 * m["image_to_audio_test_acc"]})
        rows.append({"key": "audio_to_image", "approach": "audio -> E_A -> T_A->I -> D_I -> MLC", "style": style,
                     "data": aud_test, "n_test": m["audio_to_image_test_items"],
                     "acc_paper": PAPER[(style, "audio_to_image")], "acc_ours": 100 * m["audio_to_image_test_acc"]})
    return rows


def headline(rows: list[dict]) -> dict:
    """metrics.json: Table 1's `acc_ours` as printed (percent): `mlc_acc`, `glc_acc` and per style
    `image_to_audio_acc`, `audio_to_image_acc`."""
    out: dict = {}
    for r in rows:
        name = f"{r['key']}_acc"
        if r["style"]:
            out.setdefault(r["style"], {})[name] = table_number(r["acc_ours"], DIGITS)
        else:
            out[name] = table_number(r["acc_ours"], DIGITS)
    return out


def plot_rows(rows: list[dict]) -> list[dict]:
    return [{"conversion": (f"{r['style']} {_arrow(r['key'])}" if r["style"] else r["key"].upper()),
             "acc_ours": r["acc_ours"], "acc_paper": r["acc_paper"]} for r in rows]


# -- the figure -----------------------------------------------------------------------------------
def _figure_rows(samples: dict[str, dict]) -> list[tuple]:
    """(style, row name, items, judged samples or None, colour map) per figure row, four per style."""
    rows = []
    for style, s in samples.items():
        rows += [(style, "image input", s["image_to_audio"]["inputs"], None, "gray"),
                 (style, "image -> audio", s["image_to_audio"]["outputs"], s["image_to_audio"], "magma"),
                 (style, "audio input", s["audio_to_image"]["inputs"], None, "magma"),
                 (style, "audio -> image", s["audio_to_image"]["outputs"], s["audio_to_image"], "gray")]
    return rows


def _draw_cell(ax, r: int, c: int, row: tuple, samples: dict[str, dict]) -> None:
    style, _, items, verdicts, cmap = row
    ax.set_xticks([])
    ax.set_yticks([])
    if c >= len(items):
        ax.axis("off")
        return
    # Log-mels are (mel band, frame): low bands at the bottom.
    ax.imshow(items[c], cmap=cmap, vmin=0, vmax=1, origin="lower" if cmap == "magma" else "upper", aspect="auto")
    if verdicts is not None:
        ok = int(verdicts["predictions"][c]) == int(verdicts["labels"][c])
        ax.set_title(f"judged {int(verdicts['predictions'][c])}", fontsize=7, color="black" if ok else "red")
    elif r % 4 == 0:
        ax.set_title(f"digit {int(samples[style]['image_to_audio']['labels'][c])}", fontsize=8)


def conversion_figure(path: Path, samples: dict[str, dict]) -> None:
    """Per style, four rows over the ten digits: test images and the log-mels generated from them,
    then test log-mels and the images generated from them. Each output is titled with its judge's
    verdict.

    Saved at 110 dpi without a tight bounding box, not through vgs/report/figures.save_figure
    (130 dpi, tight box), so that the committed PNG stays pixel for pixel what it was."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _figure_rows(samples)
    ncols = max(len(r[2]) for r in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.15 * ncols + 1.2, 1.3 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(ncols):
            _draw_cell(axes[r, c], r, c, row, samples)
        axes[r, 0].set_ylabel(f"{row[0]}\n{row[1]}", fontsize=7)
    bands, frames = next(iter(samples.values()))["audio_to_image"]["inputs"].shape[-2:]
    fig.suptitle(f"SMART conversions on test items (log-mels: {bands} mel bands x {frames} frames)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


# -- details.json and the time table --------------------------------------------------------------
def _timing(records: dict[str, dict]) -> dict:
    """Wall and CPU seconds per stage, as each stage measured them."""
    judges = next(iter(records.values()))["judges"]
    timing = {"judges": {"wall_seconds": judges["mlc"]["wall_seconds"] + judges["glc"]["wall_seconds"],
                         "cpu_seconds": judges["mlc"]["cpu_seconds"] + judges["glc"]["cpu_seconds"]}}
    for style, rec in records.items():
        tr, m = rec["training"], rec["metrics"]
        timing[f"train {style}"] = {"wall_seconds": tr.get("wall_seconds"), "cpu_seconds": tr.get("cpu_seconds")}
        timing[f"evaluate {style}"] = {"wall_seconds": m["wall_seconds"], "cpu_seconds": m["cpu_seconds"]}
    return timing


def details(params: Params, records: dict[str, dict]) -> dict:
    """details.json (the renderer adds `data` and the claims): accuracies as fractions, the profile,
    per-stage time and its totals."""
    judges = next(iter(records.values()))["judges"]
    out = {"mlc_test_acc": judges["mlc"]["test_acc"], "glc_test_acc": judges["glc"]["test_acc"],
           "profile": params.profile()}
    for style, rec in records.items():
        m = rec["metrics"]
        for key in ("image_to_audio_test_acc", "audio_to_image_test_acc", "image_to_audio_val_acc",
                    "audio_to_image_val_acc", "image_reconstruction_test_acc", "audio_reconstruction_test_acc"):
            out[f"{style}_{key}"] = m[key]
    timing = _timing(records)
    out["wall_seconds_total"] = round(sum(t["wall_seconds"] or 0 for t in timing.values()), 1)
    out["cpu_seconds_total"] = round(sum(t["cpu_seconds"] or 0 for t in timing.values()), 1)
    out["timing"] = timing
    return out


# -- the targets as claims ------------------------------------------------------------------------
def _conversion_floor(records: dict[str, dict], style: str) -> float:
    """The weaker of a style's two test conversion accuracies."""
    m = records[style]["metrics"]
    return min(m[f"{direction}_test_acc"] for direction in DIRECTIONS)


def _both_directions(records: dict[str, dict], style: str) -> str:
    m = records[style]["metrics"]
    return f"{style} {_pct(m['image_to_audio_test_acc'])} / {_pct(m['audio_to_image_test_acc'])}"


def claims(records: dict[str, dict]) -> list[Claim]:
    """The three targets of the reproduction (MNIST + FSDD, default profile), each a threshold on
    our test accuracy: holds / does not hold. `paper` is Table 1's value."""
    judges = next(iter(records.values()))["judges"]
    mlc, glc = judges["mlc"]["test_acc"], judges["glc"]["test_acc"]
    best = max(STYLES, key=lambda s: _conversion_floor(records, s))
    paper_conversions = "; ".join(f"{s} {PAPER[(s, 'image_to_audio')]:.2f}% / {PAPER[(s, 'audio_to_image')]:.2f}%"
                                  for s in STYLES)
    return [
        Claim("1. MLC test accuracy >= 98%", f"{PAPER['mlc']:.2f}%", _pct(mlc), "ours >= 98%",
              verdict_of(mlc >= TARGETS["mlc"])),
        Claim("2. GLC test accuracy >= 90%", f"{PAPER['glc']:.2f}% (GCDD)", _pct(glc), "ours >= 90%",
              verdict_of(glc >= TARGETS["glc"])),
        Claim("3. Both conversion directions >= 90% in one style",
              paper_conversions + " (image->audio / audio->image)",
              "; ".join(_both_directions(records, s) for s in STYLES),
              "min(image->audio, audio->image) >= 90% in at least one style",
              verdict_of(any(_conversion_floor(records, s) >= TARGETS["conversion"] for s in STYLES)),
              f"best style: {best}"),
    ]


# -- report.md's sections -------------------------------------------------------------------------
def _table1_section(rows: list[dict]) -> Section:
    return Section("Table 1", [
        Table("table1", rows, COLUMNS, digits=DIGITS),
        Figure(FIGURE, "conversions"),
        "Conversions of the first test item of each digit; each generated item is titled with its judge's "
        "verdict (red: wrong).",
    ])


def _data_section(first: dict) -> Section:
    audio = first["audio"]
    return Section("Data", ["\n".join([
        f"- Used: {first['data']}. The paper used MNIST + Google Speech Commands digits (GCDD: 20,000 training "
        "and 3,666 test clips of many speakers); FSDD's test clips come from the same 6 speakers as its "
        "training clips, so the audio side is an easier, much smaller task.",
        f"- Audio input: {audio['num_mel_bins']} log-mel bands, {audio.get('frame_length_ms')} ms window, "
        f"{audio.get('frame_shift_ms')} ms shift at {audio.get('sample_rate')} Hz (feature config "
        f"`{audio.get('feature_config')}`, store `{audio.get('store')}`), centre-cropped or zero-padded to "
        f"{audio['num_frames']} frames ({audio['cropped_items']} clips cropped), scaled to [0, 1] between the "
        f"training percentiles {audio['scale_percentiles'][0]:g} and {audio['scale_percentiles'][1]:g}. "
        "Images: MNIST resized to 32x32.",
        "- Signal generator: each training episode pairs an item with a random same-digit item of the other "
        "modality (pair stores in `data/pairs/`, seeded per epoch).",
    ])])


def _ae(c: dict) -> str:
    kind = "strided convolutions" if c["sampling"] == "stride" else "max pooling / upsampling"
    return (f"{len(c['widths'])} stages of widths {'-'.join(map(str, c['widths']))}, "
            f"{c['convs_per_stage']} conv(s) per stage, {kind}")


def _configuration_section(records: dict[str, dict], profile: str) -> Section:
    first = next(iter(records.values()))
    train, model, judges = first["config"]["train"], first["config"]["model"], first["judges"]
    pretrain = records["hybrid"]["config"]["train"]["pretrain_steps"]
    return Section("Configuration", ["\n".join([
        f"- Profile `{profile}`. Autoencoders: image {_ae(model['image'])}; audio {_ae(model['audio'])}; "
        f"{model['latent_dim']}-d latents; transcoders {model['transcoder_layers']} fully connected layers "
        f"(hidden {model['transcoder_hidden']}).",
        f"- Reciprocating training: {train['phases']} phases alternating from {train['first']}, "
        f"{train['steps_per_phase']['image']} (image) or {train['steps_per_phase']['audio']} (audio) steps per "
        f"phase, batch {train['batch_size']}, Adam lr {train['lr']:g} "
        f"decaying to {train['lr_final']:g}, loss weights reconstruction {train['weight_reconstruction']:g}, "
        f"guide {train['weight_guide']:g}. Hybrid pre-training: {pretrain['image']} image and "
        f"{pretrain['audio']} audio steps.",
        f"- Judges: MLC {judges['mlc']['config']['widths']} ({judges['mlc']['config']['epochs']} epochs, best "
        f"validation epoch {judges['mlc']['best_epoch'] + 1}), GLC {judges['glc']['config']['widths']} "
        f"({judges['glc']['config']['epochs']} epochs, best validation epoch {judges['glc']['best_epoch'] + 1}).",
    ])])


def _stale_fresh(m: dict, direction: str) -> str:
    stale, fresh = m.get(f"{direction}_last_guides_stale_acc"), m.get(f"{direction}_last_guides_fresh_acc")
    return "n/a" if stale is None else f"{_pct(stale)} / {_pct(fresh)}"


def diagnostic_rows(records: dict[str, dict]) -> list[dict]:
    return [{"style": style, "image->audio val": _pct(rec["metrics"]["image_to_audio_val_acc"]),
             "audio->image val": _pct(rec["metrics"]["audio_to_image_val_acc"]),
             "GLC on D_A(E_A(audio))": _pct(rec["metrics"]["audio_reconstruction_test_acc"]),
             "MLC on D_I(E_I(image))": _pct(rec["metrics"]["image_reconstruction_test_acc"]),
             "last guides decoded, stale/fresh (I->A)": _stale_fresh(rec["metrics"], "image_to_audio"),
             "last guides decoded, stale/fresh (A->I)": _stale_fresh(rec["metrics"], "audio_to_image")}
            for style, rec in records.items()]


def per_digit_rows(records: dict[str, dict]) -> list[dict]:
    rows = []
    for style, rec in records.items():
        for direction in DIRECTIONS:
            per_digit = rec["metrics"][f"{direction}_test_per_digit"]
            rows.append({"style": style, "direction": _arrow(direction),
                         **{str(k): f"{100 * v:.0f}" for k, v in sorted(per_digit.items(), key=lambda kv: int(kv[0]))}})
    return rows


def _diagnostics_section(records: dict[str, dict]) -> Section:
    diag, per_digit = diagnostic_rows(records), per_digit_rows(records)
    return Section("Diagnostics (not in the paper)", [
        "Validation-split conversions; each judge on its own modality's reconstructions (a low value means "
        "the decoder's outputs are too blurred for the judge, whatever the transcoder does); and the judge on "
        "the ten guides each transcoder was last fitted to, decoded by the final decoder from the latents stored "
        "at that time (stale) and from the final encoder (fresh): a gap means the other modality's later phases "
        "moved its latent space away from what the transcoder learned.",
        Table("diagnostics", diag, list(diag[0]), csv=False),
        "Per-digit test conversion accuracy (%):",
        Table("per_digit", per_digit, list(per_digit[0]), csv=False),
    ])


def _time_section(records: dict[str, dict], facts: dict) -> Section:
    threads = {rec["training"].get("torch_threads") for rec in records.values()}
    rows = [{"stage": k, "wall_s": v["wall_seconds"], "cpu_s": v["cpu_seconds"]} for k, v in facts["timing"].items()]
    rows.append({"stage": "total", "wall_s": facts["wall_seconds_total"], "cpu_s": facts["cpu_seconds_total"]})
    return Section("Time and hardware", [
        f"- {hardware_summary()} (report stage); training used {', '.join(str(t) for t in sorted(threads, key=str))} "
        "torch thread(s). Wall and CPU times are measured inside each stage (a resumed stage counts all its "
        "runs; process start-up is not included) and summed, which is the elapsed time when the stages run "
        "one after another, as under `dvc repro`.",
        Table("timing", rows, ["stage", "wall_s", "cpu_s"], digits=1, csv=False),
    ])


def _gap(records: dict[str, dict], style: str, direction: str) -> str:
    ours = 100 * records[style]["metrics"][f"{direction}_test_acc"]
    paper = PAPER[(style, direction)]
    return f"{ours:.2f}% vs {paper:.2f}% ({ours - paper:+.2f} points)"


def _beats(records: dict[str, dict]) -> str:
    """How many conversions beat the judge of their input modality (the paper's observation; not a
    claim: the report has never judged it, and one seed per style gives no noise estimate)."""
    judges = next(iter(records.values()))["judges"]
    parts, beaten = [], 0
    for style, rec in records.items():
        for direction, judge in (("image_to_audio", "mlc"), ("audio_to_image", "glc")):
            ours, ref = rec["metrics"][f"{direction}_test_acc"], judges[judge]["test_acc"]
            beaten += ours > ref
            parts.append(f"{style} {_arrow(direction)} {_pct(ours)} "
                         f"{'>' if ours > ref else '<='} {judge.upper()} {_pct(ref)}")
    return f"in ours {beaten} of {len(parts)} conversions do: " + "; ".join(parts) + "."


def _comparison_section(records: dict[str, dict]) -> Section:
    return Section("Comparison with the paper", ["\n".join([
        "- Targets (MNIST + FSDD, default profile): the claims table at the top (MLC >= 98%, GLC >= 90%, both "
        "conversion directions >= 90% in at least one style).",
        f"- Hybrid: image->audio {_gap(records, 'hybrid', 'image_to_audio')}; audio->image "
        f"{_gap(records, 'hybrid', 'audio_to_image')}.",
        f"- Classroom: image->audio {_gap(records, 'classroom', 'image_to_audio')}; audio->image "
        f"{_gap(records, 'classroom', 'audio_to_image')}.",
        f"- The paper's observation that a conversion can beat the label classifier of its *input* modality "
        f"(image->audio 99.59% > MLC 99.47%; audio->image 97.33% > GLC 96.15%, hybrid): {_beats(records)}",
        "- Why the numbers differ: a different audio corpus (FSDD: 6 speakers, 2,460 training clips, test "
        "speakers seen in training; GCDD: 20,000 training clips from many speakers, split by order, 'first "
        "2,000 wave-forms from each digit'), "
        "a different audio time scale (feature config above; method README), shallower CPU autoencoders and far "
        "fewer training steps than the paper's GPU runs (the paper gives no step counts), and judges of our own "
        "(they score generated log-mels, which are much blurrier than real ones: see the reconstruction "
        "diagnostics). FSDD's small test set (300 clips) makes audio->image accuracies coarse: one clip is "
        "0.33 points.",
    ])])


# -- the report -----------------------------------------------------------------------------------
def load_inputs() -> tuple[dict[str, dict], dict[str, dict]]:
    """Each style's evaluation record (with the judges' and training's facts) and figure samples."""
    records = {s: load_record(s) for s in STYLES}
    samples = {s: load_samples(eval_dir(s) / SAMPLES_FILE) for s in STYLES}
    return records, samples


def build_report(params: Params, records: dict[str, dict]) -> PaperReport:
    """SMART's PaperReport from the evaluation records (the figure is drawn separately)."""
    first = next(iter(records.values()))
    rows = table_rows(records)
    facts = details(params, records)
    table1 = _table1_section(rows)
    # Table 1's accuracies as the points that `dvc plots show` draws: a CSV, not shown again here.
    table1.blocks.append(Table("plot_accuracy", plot_rows(rows), PLOT_COLUMNS, digits=DIGITS, shown=False))
    return PaperReport(
        paper=PAPER_ID,
        title="SMART: Sensory Media Association through Reciprocating Training (Liu et al.)",
        data=first["data"],
        intro="Reproduction of Table 1 with the code in `vgs/methods/smart/` (choices the paper leaves open: "
              "`vgs/methods/smart/README.md`), from the stages `smart-judges`, `smart-train@<style>` and "
              "`smart-evaluate@<style>` (styles: " + ", ".join(STYLES) + "). Accuracies are percentages; "
              "`acc_paper` is Table 1 of the paper.",
        claims=claims(records),
        claims_heading="Targets (MNIST + FSDD, default profile) beside ours",
        headline=headline(rows),
        details=facts,
        sections=[table1, _data_section(first), _configuration_section(records, facts["profile"]),
                  _diagnostics_section(records), _time_section(records, facts), _comparison_section(records)],
    )


def write_report(params: Params, out: Path | None = None) -> PaperReport:
    """Draw the figure into `out` (default results/smart/) and render the report there."""
    out = Path(out) if out else results_dir(PAPER_ID)
    records, samples = load_inputs()
    report = build_report(params, records)
    out.mkdir(parents=True, exist_ok=True)
    conversion_figure(out / FIGURE, samples)
    render(report, out)
    return report


def stage(params: Params, progress: bool = True) -> str:
    """DVC stage smart-report: Table 1, the conversions figure, metrics and report.md -> results/smart/."""
    out = results_dir(PAPER_ID)
    report = write_report(params, out)
    return "\n".join(summary_lines(report, out) + [f"  figure: {FIGURE}"])
