"""Feature extraction plus storage on FSDD: vgs (kaldi-native-fbank -> Zarr) against lhotse.

Measures, on the 3,000 FSDD recordings (1,312 s of audio) with the `fbank80` config:
  * vgs `build_store` with 1 and with 2 extraction workers (the calling thread is the single
    writer; the workers are threads when knf runs through vgs's C entry point, which releases the
    GIL, and processes otherwise; the output says which);
  * lhotse `CutSet.compute_and_store_features` with its Fbank (options matched to fbank80 as far
    as lhotse allows), NumpyHdf5Writer, num_jobs=1 and one torch thread.
Each timed run is a fresh process (imports and corpus loading are outside the timer; pool
start-up, audio reading, extraction and writing the store are inside). The runs are interleaved,
repeated, and the best wall time of each system is reported, which is the least disturbed by
other work on the machine. Also reported: CPU time (parent + workers), and peak RSS of the parent
and of each worker process (forked, so they share most of their pages with the parent).

    python benchmarks/features.py                # 3 repeats, prints the table
    python benchmarks/features.py --repeats 5 --json bench.json

Also measured: the most two processes can gain on this machine, with the extraction alone split
in two halves run at once (no reading, no IPC, no writing).

Targets (issue 2): vgs with 1 process >= 2.5x lhotse's throughput; 2 workers >= 1.7x vgs with 1.
`--check` exits 1 when a target is missed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TARGET_VS_LHOTSE = 2.5
TARGET_TWO_PROCS = 1.7


# -- one timed run, in its own process ------------------------------------------------------------
class PeakWorkerRss:
    """Peak RSS (VmHWM) of this process's multiprocessing workers, read from /proc every 50 ms.

    Cheap on purpose: a sampler that scans the process table (psutil's children()) costs enough
    CPU to distort the timings it sits beside."""

    def __init__(self):
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import multiprocessing

        while not self._stop.is_set():
            for child in multiprocessing.active_children():
                try:
                    status = Path(f"/proc/{child.pid}/status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            self._stop.wait(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def load_manifest(path: str):
    from vgs.corpora.manifest import read_manifest

    manifest = read_manifest(path)
    return manifest, [r for r in manifest if r.modality == "audio"]


def run_vgs(args) -> dict:
    from vgs.features.config import load_feature_config
    from vgs.features.extract import build_store
    from vgs.params import Params

    cfg = load_feature_config(Params.load(args.params), args.config)
    manifest, _ = load_manifest(args.manifest)
    out = Path(args.out) / f"{args.config}.zarr"

    def work():
        summary = build_store(manifest, args.manifest, cfg, out, num_workers=args.workers, on_error="raise")
        return summary["items"], summary["frames"]

    return timed(work)


def run_lhotse(args) -> dict:
    import torch
    from lhotse import CutSet, Fbank, FbankConfig, NumpyHdf5Writer, Recording, RecordingSet

    from vgs.features.config import load_feature_config
    from vgs.params import Params

    torch.set_num_threads(1)  # num_jobs=1 means one core, as for vgs with one process
    cfg = load_feature_config(Params.load(args.params), args.config)
    manifest, records = load_manifest(args.manifest)
    recordings = RecordingSet.from_recordings(
        Recording.from_file(str(manifest.resolve(r)), recording_id=r.id) for r in records)
    cuts = CutSet.from_manifests(recordings=recordings)
    extractor = Fbank(FbankConfig(
        sampling_rate=cfg.sample_rate, frame_length=cfg.frame_length_ms / 1000,
        frame_shift=cfg.frame_shift_ms / 1000, round_to_power_of_two=cfg.round_to_power_of_two,
        remove_dc_offset=cfg.remove_dc_offset, preemph_coeff=cfg.preemph_coeff,
        window_type=cfg.window_type, dither=cfg.dither,
        # lhotse insists on ceil(duration / shift) frames, i.e. Kaldi's snip_edges=False.
        snip_edges=False, use_energy=cfg.use_energy, low_freq=cfg.low_freq, high_freq=cfg.high_freq,
        num_filters=cfg.num_mel_bins))
    out = Path(args.out) / "lhotse"

    def work():
        with_feats = cuts.compute_and_store_features(extractor=extractor, storage_path=out, num_jobs=1,
                                                     storage_type=NumpyHdf5Writer, progress_bar=False)
        return len(with_feats), sum(c.features.num_frames for c in with_feats)

    return timed(work)


def timed(work) -> dict:
    before_self = resource.getrusage(resource.RUSAGE_SELF)
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    with PeakWorkerRss() as workers:
        start = time.perf_counter()
        items, frames = work()
        wall = time.perf_counter() - start
    after_self = resource.getrusage(resource.RUSAGE_SELF)
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)

    def cpu(a, b):
        return (b.ru_utime + b.ru_stime) - (a.ru_utime + a.ru_stime)

    return {"wall": wall, "cpu_parent": cpu(before_self, after_self),
            "cpu_workers": cpu(before_children, after_children), "items": items, "frames": int(frames),
            "peak_rss_parent_mb": after_self.ru_maxrss / 1024, "peak_rss_worker_mb": workers.peak_kb / 1024}


# -- what two processes can gain on this machine at best -------------------------------------------
_ceiling_stream = None


def _extract_span(span) -> float:
    """Seconds of pure kaldi-native-fbank compute over a slice of the joined FSDD stream."""
    import kaldi_native_fbank as knf

    from vgs.features.audio import knf_options

    cfg, start, stop = span
    start_time = time.perf_counter()
    extractor = knf.OnlineFbank(knf_options(cfg))
    extractor.accept_waveform(float(cfg.sample_rate), memoryview(_ceiling_stream[start:stop]))
    extractor.input_finished()
    return time.perf_counter() - start_time


def two_process_ceiling(args, manifest: str, repeats: int) -> list[float]:
    """Speed-up of 2 processes over 1 for extraction alone: no reading, IPC or writing.

    The same joined waveform is computed whole by one worker, then in two halves by two workers
    at once. On a VM whose two vCPUs share a host core's resources this is well under 2x, and it
    bounds what any two-process pipeline can reach here."""
    import multiprocessing as mp

    from vgs.corpora.audio_info import read_audio
    from vgs.features.config import load_feature_config
    from vgs.params import Params

    global _ceiling_stream
    cfg = load_feature_config(Params.load(args.params), args.config)
    m, records = load_manifest(manifest)
    _ceiling_stream = np.concatenate([read_audio(m.resolve(r))[0].reshape(-1) for r in records]).astype(np.float32)
    _ceiling_stream *= np.float32(cfg.waveform_scale)
    n = len(_ceiling_stream)
    ratios = []
    with mp.get_context("fork").Pool(2) as pool:
        pool.map(_extract_span, [(cfg, 0, n // 8)] * 2)  # warm both workers
        for _ in range(repeats):
            start = time.perf_counter()
            pool.apply(_extract_span, ((cfg, 0, n),))
            one = time.perf_counter() - start
            start = time.perf_counter()
            pool.map(_extract_span, [(cfg, 0, n // 2), (cfg, n // 2, n)], chunksize=1)
            two = time.perf_counter() - start
            ratios.append(one / two)
    return ratios


def extraction_path(args) -> str:
    """Which knf path vgs takes and what its 2 workers are, as the timed runs see it."""
    from vgs.features import knf_bulk
    from vgs.features.audio import releases_gil
    from vgs.features.config import load_feature_config
    from vgs.params import Params

    cfg = load_feature_config(Params.load(args.params), args.config)
    return f"{knf_bulk.status()}; workers are {'threads' if releases_gil(cfg) else 'processes'}"


# -- the driver ------------------------------------------------------------------------------------
def find_manifest(requested: str | None, tmp: Path) -> str:
    if requested:
        return requested
    default = REPO / "data/manifests/fsdd.jsonl"
    if default.exists():
        return str(default)
    from vgs.corpora.fsdd import prepare_fsdd
    from vgs.corpora.manifest import write_manifest

    for root in (REPO / "data/raw/fsdd", REPO / "../shared/data/fsdd"):
        if (root / "recordings").is_dir():
            path = tmp / "fsdd.jsonl"
            write_manifest(path, prepare_fsdd(root.resolve()))
            return str(path)
    sys.exit("no FSDD manifest: run `dvc repro prepare@fsdd` first, or pass --manifest")


def one_run(system: str, workers: int, args, manifest: str, tmp: Path) -> dict:
    out = tmp / f"{system}-{workers}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = [sys.executable, __file__, "--_run", system, "--workers", str(workers), "--out", str(out),
           "--manifest", manifest, "--params", args.params, "--config", args.config]
    env = dict(os.environ, TQDM_DISABLE="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    if proc.returncode != 0:
        sys.exit(f"{system} x{workers} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["store_mb"] = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2 ** 20
    shutil.rmtree(out, ignore_errors=True)
    return result


def warm_page_cache(manifest: str) -> None:
    m, records = load_manifest(manifest)
    for r in records:
        m.resolve(r).read_bytes()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", help="FSDD manifest (default data/manifests/fsdd.jsonl)")
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--config", default="fbank80")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-lhotse", action="store_true")
    ap.add_argument("--json", help="also write the raw runs here")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    ap.add_argument("--_run", choices=["vgs", "lhotse"], help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._run:
        result = run_vgs(args) if args._run == "vgs" else run_lhotse(args)
        print(json.dumps(result))
        return

    os.chdir(REPO)  # manifests hold paths relative to the repository root
    if not args.no_lhotse:
        import importlib.util

        if importlib.util.find_spec("lhotse") is None:
            sys.exit("lhotse is not installed: pip install -e '.[bench]' (or pass --no-lhotse)")
    systems = [("vgs", 1), ("vgs", 2)] + ([] if args.no_lhotse else [("lhotse", 1)])
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="vgs-bench-") as tmpdir:
        tmp = Path(tmpdir)
        manifest = find_manifest(args.manifest, tmp)
        _, records = load_manifest(manifest)
        audio_seconds = sum(r.num_samples / r.sample_rate for r in records)
        warm_page_cache(manifest)
        runs: dict[tuple, list] = {s: [] for s in systems}
        # One untimed round first (page cache, lazy imports, allocator), then interleaved repeats
        # so that a burst of other load hits every system alike.
        for s in systems:
            one_run(*s, args, manifest, tmp)
        for rep in range(args.repeats):
            for s in systems:
                r = one_run(*s, args, manifest, tmp)
                runs[s].append(r)
                print(f"  run {rep + 1}/{args.repeats} {s[0]} x{s[1]}: {r['wall']:.2f} s wall, "
                      f"{r['cpu_parent'] + r['cpu_workers']:.2f} s CPU", file=sys.stderr)
        ceiling = two_process_ceiling(args, manifest, args.repeats)
    load_after = os.getloadavg()

    best = {s: min(rs, key=lambda r: r["wall"]) for s, rs in runs.items()}
    rtf = {s: audio_seconds / b["wall"] for s, b in best.items()}
    print(f"\nFSDD: {len(records)} recordings, {audio_seconds:.0f} s of audio; config {args.config}; "
          f"best of {args.repeats} runs each")
    print(f"extraction: {extraction_path(args)}")
    print(f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after\n")
    header = ("system", "workers", "wall s", "x real time", "CPU s", "x real time per CPU s",
              "peak RSS MB (parent / each worker)", "store MB")
    rows = []
    for (system, workers), b in best.items():
        cpu = b["cpu_parent"] + b["cpu_workers"]
        name = "vgs (kaldi-native-fbank, Zarr)" if system == "vgs" else "lhotse Fbank, NumpyHdf5Writer"
        worker_rss = f"{b['peak_rss_worker_mb']:.0f}" if b["peak_rss_worker_mb"] else "-"
        rows.append((name, str(workers), f"{b['wall']:.2f}", f"{rtf[(system, workers)]:.0f}", f"{cpu:.2f}",
                     f"{audio_seconds / cpu:.0f}",
                     f"{b['peak_rss_parent_mb']:.0f} / {worker_rss}",
                     f"{b['store_mb']:.1f}"))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")

    missed = []
    print()

    def compare(label, fast, slow, target):
        ratio = rtf[fast] / rtf[slow]
        # Runs of one round are back to back, so their ratio is less exposed to load that comes
        # and goes than a ratio of two best times taken minutes apart.
        rounds = sorted(s["wall"] / f["wall"] for f, s in zip(runs[fast], runs[slow]))
        ok = ratio >= target
        print(f"{label}: {ratio:.2f}x throughput, best against best (target >= {target}x) "
              f"{'met' if ok else 'MISSED'}; per round " + ", ".join(f"{r:.2f}" for r in rounds)
              + f" (median {float(np.median(rounds)):.2f}x)")
        return [] if ok else [label]

    if ("lhotse", 1) in rtf:
        missed += compare("vgs 1 worker vs lhotse 1 job", ("vgs", 1), ("lhotse", 1), TARGET_VS_LHOTSE)
    missed += compare("vgs 2 workers vs 1", ("vgs", 2), ("vgs", 1), TARGET_TWO_PROCS)
    # Reported as a median: the best of noisy ratios is the luckiest round, not the machine.
    print(f"2-process scaling of the extraction alone (halves in parallel, no I/O): median "
          f"{float(np.median(ceiling)):.2f}x; per round " + ", ".join(f"{r:.2f}" for r in sorted(ceiling)))
    if load_before[0] > 0.5 or load_after[0] > 0.5:
        print("note: the machine was busy (load average above), so wall times are distorted; the two-process\n"
              "speed-up especially, since Linux shares the CPU per session (autogroup), not per process.\n"
              "Publish figures from an idle machine.")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"audio_seconds": audio_seconds, "items": len(records), "config": args.config,
             "load_before": load_before, "load_after": load_after,
             "runs": {f"{s}x{w}": rs for (s, w), rs in runs.items()}, "two_process_ceiling": ceiling},
            indent=2))
    if args.check and missed:
        sys.exit(1)


if __name__ == "__main__":
    main()
