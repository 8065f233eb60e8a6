"""Where a training step goes, per method, at the `cpu` profile shapes; and whether bf16 pays off.

For each method (leidal2017, pvae2018, smart, mortazavi2020, crabtree2021) this builds the
method's own TrainTask from params.yaml on the real stores under data/ and drives it as
vgs/train/trainer.py does (start_epoch, then train_step), without the trainer's checkpoints. It
prints:
  * steps per second, in fp32 and with torch.autocast("cpu", dtype=torch.bfloat16) around the
    task's train step (forward and loss; backward and the optimizer step run with autocast off),
    and the speed ratio bf16/fp32 (above 1: bf16 is faster);
  * the share of a step's time in data loading, forward, loss, backward, optimizer step and other
    (from torch.profiler);
  * the torch thread count, the CPU model and whether it has AMX and avx512_bf16.

How: warm-up steps in both precisions; then timed steps with fp32 and bf16 alternating
(fp32 bf16, bf16 fp32, ...), so that drift in this VM's CPU speed hits both alike. Steps/s, CPU
time per step and the ratio (by wall time and by CPU time) come from these timed steps, with no
profiler attached. Then, per precision, profiled steps under torch.profiler: record_function
labels are put around the task's data accessors, model forwards, loss functions,
Tensor.backward and the optimizer's step, zero_grad and LR scheduler, by patching those objects
(in the train module, on the task's objects, on torch) for the profiled steps only; nothing under
vgs/ or stages/ is edited. A part's share is its labelled time minus any labelled time nested
inside it, over the whole step. "other" is the rest of the step: indexing, seeding a generator,
logging values. The same labels also time each part by the process's CPU time, printed beside
the profiler's wall-time split: on a busy machine it does not charge waiting for a core to
whatever part was running. Backward and the optimizer step are wrapped with autocast off in
every step, timed or profiled, fp32 or bf16, so both precisions carry the same wrappers.

Steps cycle through the full batches of one epoch (for SMART: one reciprocating phase per
modality). The caches that training fills during its first epoch (normalised captions) are filled
before timing, so the data share is that of later epochs.

    .venv/bin/python benchmarks/train_step.py --steps 3 --warmup 1                # quick check
    .venv/bin/python benchmarks/train_step.py --methods leidal2017 pvae2018 --steps 30
    .venv/bin/python benchmarks/train_step.py --run mortazavi2020=dg2a1024 smart=hybrid --json /tmp/ts.json
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import yaml
from torch.profiler import ProfilerActivity, record_function

REPO = Path(__file__).resolve().parent.parent
METHODS = ("leidal2017", "pvae2018", "smart", "mortazavi2020", "crabtree2021")
# One run each: all Leidal runs share shapes; pvae is the full model (both modalities, every
# term); SMART classroom is all reciprocating phases; dg4a2048 is the slowest Mortazavi run.
DEFAULT_RUNS = {"leidal2017": "ig0", "pvae2018": "pvae", "smart": "classroom",
                "mortazavi2020": "dg4a2048", "crabtree2021": "baseline"}
TRAIN_STAGE = {"leidal2017": "leidal2017-train", "pvae2018": "pvae2018-train", "smart": "smart-train",
               "mortazavi2020": "mortazavi2020-train", "crabtree2021": "crabtree2021-train"}
PARTS = ("data", "forward", "loss", "backward", "optimizer", "other")
PRECISIONS = ("fp32", "bf16")
PREFIX = "train_step::"


class MissingStore(Exception):
    def __init__(self, path: str):
        super().__init__(path)
        self.path = str(path)


def require(*paths) -> None:
    for p in paths:
        if not (REPO / p).exists():
            raise MissingStore(p)


def require_pair_store(path: str, views: list[str]) -> None:
    """The pair store and the feature stores it names for `views`."""
    require(path)
    from vgs.pairing.pairs import PairStore
    stores = {v["name"]: v.get("store") for v in PairStore(path).views}
    require(*(stores[v] for v in views if stores.get(v)))


def building_stage(path: str, fallback: str) -> str:
    """The stage that writes `path` according to dvc.lock (read as a file: no DVC lock taken)."""
    try:
        stages = yaml.safe_load((REPO / "dvc.lock").read_text()).get("stages", {})
    except (OSError, yaml.YAMLError, AttributeError):
        return fallback
    target = Path(os.path.normpath(path))
    for name, stage in stages.items():
        for out in stage.get("outs", []) or []:
            o = Path(os.path.normpath(out["path"]))
            if target == o or o in target.parents:
                return name
    return fallback


# -- one method's step, ready to drive -------------------------------------------------------------
@dataclass
class Case:
    method: str
    run: str
    task: Any
    epoch: int                      # the epoch (SMART: phase) whose batches are used
    batches: int                    # full batches of that epoch; steps cycle through them
    batch: str                      # what one batch is
    optimizers: list
    labels: list                    # (object, attribute, part): where profiler labels go
    threads: int | None = None      # the config's num_threads (None: torch's default)
    schedulers: list = field(default_factory=list)
    warm: Callable[[list[int]], None] = lambda indices: None
    set_precision: Callable[[str], None] = lambda precision: None
    notes: list[str] = field(default_factory=list)
    k: int = 0                      # steps taken so far: each step takes the next batch

    def step(self, precision: str) -> None:
        self.set_precision(precision)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            self.task.train_step(self.epoch, self.k % self.batches)
        self.k += 1

    def trainable(self) -> int:
        return sum(p.numel() for o in self.optimizers for g in o.param_groups for p in g["params"])


def leidal_cases(params, run: str) -> list[Case]:
    from vgs.methods.leidal2017 import train as mod
    from vgs.methods.leidal2017.config import load_run_config
    from vgs.methods.leidal2017.data import LeidalData
    cfg = load_run_config(params, run)
    require(cfg.data.pairs, cfg.data.image_store, cfg.data.audio_store)
    # The task reads cfg.train.precision every step and runs its own autocast from it: an outer
    # autocast alone would be switched off inside, so bf16 steps swap in a bf16 config.
    cfgs = {p: dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, precision=p)) for p in PRECISIONS}
    data = LeidalData(cfg.data, cfg.model.num_frames)
    data.warm("train")      # as train_run does
    task = mod.LeidalTask(cfgs["fp32"], data)
    task.start_epoch(0)
    t = cfg.train
    notes = [f"params.yaml trains it with precision: {t.precision} (autocast around leidal_loss)"]
    return [Case("leidal2017", run, task, 0, len(task._image_idx) // t.batch_pairs,
                 f"{t.batch_pairs} pairs x {t.num_samples} samples", [task.optimizer],
                 [(data, "images", "data"), (data, "audio", "data"),
                  (task.model.image, "forward", "forward"), (task.model.audio, "forward", "forward"),
                  (mod, "leidal_loss", "loss")],
                 threads=t.num_threads, set_precision=lambda p: setattr(task, "cfg", cfgs[p]), notes=notes)]


def pvae_cases(params, run: str) -> list[Case]:
    from vgs.methods.pvae2018 import train as mod
    from vgs.methods.pvae2018.config import load_run_config
    from vgs.methods.pvae2018.data import DigitData
    cfg = load_run_config(params, run)
    require(cfg.data.pairs, cfg.data.audio_store, cfg.data.image_store)
    data = DigitData(cfg.data)
    task = mod.PVAETask(cfg, data)
    task.start_epoch(0)
    model = task.model
    return [Case("pvae2018", run, task, 0, task.num_batches(0), f"{cfg.train.batch_size} pairs", [task.opt],
                 [(data, "batch", "data"), (model, "infer_multimodal", "forward"),
                  (model, "infer_unimodal", "forward"), (model, "decode", "forward"), (mod, "objective", "loss")],
                 notes=["gradient clipping is counted in optimizer"])]


def smart_cases(params, style: str) -> list[Case]:
    from vgs.methods.smart import MODALITIES, STYLES
    from vgs.methods.smart import train as mod
    from vgs.methods.smart.data import data_params, load_data
    from vgs.paths import pairs_path
    from vgs.utils.seed import seed_everything
    if style not in STYLES:
        raise SystemExit(f"smart has no style {style!r}; styles: {', '.join(STYLES)}")
    d = data_params(params)
    require(d.str("image_store"), d.str("audio_store"), pairs_path(d.str("image_pairs")),
            pairs_path(d.str("audio_pairs")))
    config = mod.run_config(params, style)
    cfg = config["train"]
    data = load_data(params, pairs=True)
    seed_everything(config["seed"])     # as train_style does
    net = mod.build_net(config["model"], {m: data[m].input_hw for m in MODALITIES})
    schedule = mod.build_schedule(cfg["pretrain_steps"], cfg["phases"], cfg["steps_per_phase"], cfg["first"])
    task = mod.SmartTask(net, data, schedule, cfg, config["seed"])
    labels = [(data[m], "x", "data") for m in MODALITIES]
    labels += [(net.autoencoders[m], "forward", "forward") for m in MODALITIES]
    labels += [(net.transcoders[m], "forward", "forward") for m in MODALITIES]
    labels += [(mod, "F.mse_loss", "loss")]
    n_recip = {m: sum(p.kind == "reciprocate" and p.modality == m for p in schedule) for m in MODALITIES}
    cases = []
    for m in MODALITIES:
        epoch = next(e for e, p in enumerate(schedule) if p.kind == "reciprocate" and p.modality == m)
        cases.append(Case("smart", f"{style}/{m}", task, epoch, schedule[epoch].steps,
                          f"{cfg['batch_size']} {m}s", [task.opt[m]], labels,
                          notes=[f"a reciprocating {m} phase ({n_recip[m]} phases x {schedule[epoch].steps} steps "
                                 "in the run); pretraining steps are not measured"]))
    return cases


def mortazavi_cases(params, run: str) -> list[Case]:
    from vgs.methods.mortazavi2020 import train as mod
    from vgs.methods.mortazavi2020.config import load_run_config
    cfg = load_run_config(params, run)
    require_pair_store(cfg.data.pairs, [cfg.data.image_view, cfg.data.caption_view])
    views = mod.load_views(cfg)
    task = mod.MortazaviTask(cfg, views)
    task.start_epoch(0)
    b = cfg.train.batch_size

    def warm(indices):
        for i in indices:
            rows = task.train_tuples[task._order[i * b:(i + 1) * b]]
            views.captions(cfg.data.caption_view, rows[:, 1])

    return [Case("mortazavi2020", run, task, 0, len(task.train_tuples) // b, f"{b} image-caption pairs",
                 [task.optimizer],
                 [(views, "images", "data"), (views, "captions", "data"), (mod, "random_crops", "data"),
                  (task.pair, "embed_images", "forward"), (task.pair, "embed_captions", "forward"),
                  (mod, "hinge_all_pairs", "loss")],
                 threads=cfg.train.num_threads, schedulers=[task.scheduler], warm=warm,
                 notes=["random crops are counted in data"])]


def crabtree_cases(params, run: str) -> list[Case]:
    from vgs.methods.crabtree2021 import train as mod
    from vgs.methods.crabtree2021.config import load_run_config
    cfg = load_run_config(params, run)
    require_pair_store(cfg.data.pairs, cfg.data.views)
    views = mod.load_views(cfg)
    task = mod.CrabtreeTask(cfg, views)
    task.start_epoch(0)
    b = cfg.train.batch_size

    def warm(indices):
        for i in indices:
            rows = task.train_tuples[task._order[i * b:(i + 1) * b]]
            for k, lang in enumerate(views.views[1:], start=1):
                views.captions(lang, rows[:, k])

    return [Case("crabtree2021", run, task, 0, task.steps_per_epoch,
                 f"{b} scenes x {len(cfg.data.views)} views", [task.optimizer],
                 [(views, "images", "data"), (views, "captions", "data"),
                  (task.model, "embed_images", "forward"), (task.model, "embed_captions", "forward"),
                  (mod, "multiview_loss", "loss")],
                 threads=cfg.train.num_threads, schedulers=[task.scheduler], warm=warm)]


BUILDERS = {"leidal2017": leidal_cases, "pvae2018": pvae_cases, "smart": smart_cases,
            "mortazavi2020": mortazavi_cases, "crabtree2021": crabtree_cases}


# -- labels ----------------------------------------------------------------------------------------
class CpuSplit:
    """The same parts by the process's CPU time (all threads). Where this process waits for a core,
    the profiler's wall-time intervals charge the wait to whatever part was running; CPU time does
    not (OpenMP threads spinning at a barrier still count)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.recording = False
        self.stack: list[list[float]] = []        # [cpu at entry, cpu of nested parts]
        self.own = dict.fromkeys(PARTS, 0.0)
        self.steps_cpu = 0.0

    @contextlib.contextmanager
    def region(self, part: str):
        if not self.recording:
            yield
            return
        frame = [time.process_time(), 0.0]
        self.stack.append(frame)
        try:
            yield
        finally:
            self.stack.pop()
            elapsed = time.process_time() - frame[0]
            if self.stack:
                self.stack[-1][1] += elapsed
            self.own["other" if part == "step" else part] += elapsed - frame[1]
            if part == "step":
                self.steps_cpu += elapsed

    def shares(self) -> dict[str, float]:
        return {p: v / self.steps_cpu for p, v in self.own.items()} if self.steps_cpu else {}


CPU_SPLIT = CpuSplit()


@contextlib.contextmanager
def region(part: str):
    with record_function(PREFIX + part), CPU_SPLIT.region(part):
        yield


def labelled(fn, part: str, label: bool = True, autocast_off: bool = False):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with region(part) if label else contextlib.nullcontext():
            if autocast_off:
                # The benchmark's autocast is meant for forward and loss only, as Leidal's own is.
                with torch.autocast("cpu", enabled=False):
                    return fn(*args, **kwargs)
            return fn(*args, **kwargs)
    return wrapper


class IndexedTensor:
    """Stands in for a data tensor that a train step indexes to get its batch (SMART's x)."""

    def __init__(self, tensor: torch.Tensor, part: str):
        self._tensor, self._part = tensor, part

    def __getitem__(self, index):
        with region(self._part):
            return self._tensor[index]

    def __getattr__(self, name):
        return getattr(self._tensor, name)


class Namespace:
    """A module seen through one replaced attribute (e.g. torch.nn.functional with mse_loss labelled)."""

    def __init__(self, real, **replaced):
        self._real = real
        self.__dict__.update(replaced)

    def __getattr__(self, name):
        return getattr(self._real, name)


@contextlib.contextmanager
def patched(case: Case, label: bool):
    """Backward and the optimizer update always run with autocast off (both precisions, so both
    pay the same wrapper); with `label`, every part of the step is also labelled for the profiler."""
    undo = []

    def patch(obj, attr, value):
        undo.append((obj, attr, attr in vars(obj), vars(obj).get(attr)))
        setattr(obj, attr, value)

    update = [(torch.Tensor, "backward", "backward"), (torch.nn.utils, "clip_grad_norm_", "optimizer")]
    update += [(o, a, "optimizer") for o in case.optimizers for a in ("step", "zero_grad")]
    update += [(s, "step", "optimizer") for s in case.schedulers]
    try:
        for obj, attr, part in update:
            patch(obj, attr, labelled(getattr(obj, attr), part, label=label, autocast_off=True))
        if label:
            for obj, attr, part in case.labels:
                head, _, tail = attr.partition(".")
                value = getattr(obj, head)
                if tail:
                    value = Namespace(value, **{tail: labelled(getattr(value, tail), part)})
                elif isinstance(value, torch.Tensor):
                    value = IndexedTensor(value, part)
                else:
                    value = labelled(value, part)
                patch(obj, head, value)
        yield
    finally:
        for obj, attr, had, old in reversed(undo):
            if had:
                setattr(obj, attr, old)
            else:
                delattr(obj, attr)


def shares_from_events(events) -> tuple[dict[str, float], int, float]:
    """({part: share of step time}, steps, mean profiled ms per step) from the labelled events."""
    ours = [e for e in events if e.name.startswith(PREFIX)]
    exclusive = {p: 0.0 for p in PARTS}
    total, steps = 0.0, 0
    by_thread: dict[int, list] = {}
    for e in ours:
        by_thread.setdefault(e.thread, []).append(e)
    for evs in by_thread.values():
        evs.sort(key=lambda e: (e.time_range.start, -e.time_range.end))
        stack, nested = [], {}
        for e in evs:
            while stack and stack[-1].time_range.end <= e.time_range.start:
                stack.pop()
            if stack:
                nested[id(stack[-1])] = nested.get(id(stack[-1]), 0.0) + e.time_range.elapsed_us()
            stack.append(e)
        for e in evs:
            own = e.time_range.elapsed_us() - nested.get(id(e), 0.0)
            if e.name == PREFIX + "step":
                total += e.time_range.elapsed_us()
                steps += 1
                exclusive["other"] += own
            else:
                exclusive[e.name[len(PREFIX):]] += own
    if not total:
        return {p: float("nan") for p in PARTS}, 0, float("nan")
    return {p: v / total for p, v in exclusive.items()}, steps, total / steps / 1e3


# -- measuring -------------------------------------------------------------------------------------
def measure(case: Case, precisions: list[str], warmup: int, steps: int, profile_steps: int) -> dict:
    case.task.start_epoch(case.epoch)
    # Fill the caches every batch used here would find filled after the first epoch.
    used = 2 * (warmup + steps) + len(precisions) * (profile_steps + 1)
    case.warm(sorted({(case.k + i) % case.batches for i in range(used)}))
    out = {p: {} for p in precisions}
    times = {p: [] for p in precisions}

    def attempt(p: str) -> bool:
        """One step; a bf16 step that raises drops bf16 and is reported (fp32 errors are bugs)."""
        if p not in times:
            return False
        try:
            case.step(p)
            return True
        except Exception as exc:
            if p == "fp32":
                raise
            out[p] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:200]}
            del times[p]
            return False

    with patched(case, label=False):
        for p in precisions:
            for _ in range(warmup):
                attempt(p)
        for r in range(steps):
            for p in (precisions if r % 2 == 0 else precisions[::-1]):
                w0, c0 = time.perf_counter(), time.process_time()
                if attempt(p):
                    times[p].append((time.perf_counter() - w0, time.process_time() - c0))
    precisions = [p for p in precisions if p in times]
    for p in precisions:
        wall = [w for w, _ in times[p]]
        cpu = sum(c for _, c in times[p])
        out[p].update({"steps_per_s": len(wall) / sum(wall), "ms_per_step": 1e3 * sum(wall) / len(wall),
                       "ms_per_step_median": 1e3 * statistics.median(wall),
                       "cpu_ms_per_step": 1e3 * cpu / len(wall),
                       "cpu_share": cpu / (sum(wall) * torch.get_num_threads())})
    if len(precisions) == 2:
        f, b = ([w for w, _ in times[p]] for p in PRECISIONS)
        out["bf16_over_fp32"] = sum(f) / sum(b)
        out["bf16_over_fp32_median_of_rounds"] = statistics.median(x / y for x, y in zip(f, b))
        # At nice 19 beside busy jobs the wall time mostly measures waiting for a core; the
        # process's CPU time does not (though OpenMP threads spinning at barriers count in it).
        out["bf16_over_fp32_cpu"] = out["fp32"]["cpu_ms_per_step"] / out["bf16"]["cpu_ms_per_step"]
    for p in precisions:
        if profile_steps <= 0:
            continue
        CPU_SPLIT.reset()
        with patched(case, label=True):
            # The first step under the profiler pays its start-up; it is not recorded.
            sched = torch.profiler.schedule(wait=0, warmup=1, active=profile_steps, repeat=1)
            with torch.profiler.profile(activities=[ProfilerActivity.CPU], schedule=sched) as prof:
                for i in range(profile_steps + 1):
                    CPU_SPLIT.recording = i > 0
                    with region("step"):
                        case.step(p)
                    prof.step()
        CPU_SPLIT.recording = False
        shares, n, ms = shares_from_events(prof.events())
        out[p].update({"shares": shares, "cpu_shares": CPU_SPLIT.shares(), "profiled_steps": n,
                       "profiled_ms_per_step": ms})
    return out


def cpu_info() -> dict:
    info = {"model": platform.processor() or platform.machine(), "flags": set()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name":
                info["model"] = value.strip()
            elif key == "flags":
                info["flags"] = set(value.split())
    except OSError:
        pass
    flags = info.pop("flags")
    info.update({"logical_cpus": os.cpu_count(), "hypervisor": "hypervisor" in flags,
                 "amx": sorted(f for f in flags if f.startswith("amx")),
                 "avx512_bf16": "avx512_bf16" in flags, "avx512f": "avx512f" in flags,
                 "torch": torch.__version__, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()})
    try:
        info["onednn_bf16"] = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        info["onednn_bf16"] = None
    return info


# -- printing --------------------------------------------------------------------------------------
def pct(x) -> str:
    return "   -" if x is None or x != x else f"{100 * x:4.0f}"


def shares_lines(r: dict) -> list[str]:
    s = r.get("shares")
    if not s:
        return ["not profiled"]
    overhead = r["profiled_ms_per_step"] / r["ms_per_step"] - 1
    split = lambda d: " | ".join(f"{p} {100 * d[p]:.0f}%" for p in PARTS)  # noqa: E731
    lines = [f"profiler, wall: {split(s)}   ({r['profiled_steps']} steps, {r['profiled_ms_per_step']:.0f} ms "
             f"each, {100 * overhead:+.0f}% vs unprofiled)"]
    if r.get("cpu_shares"):
        lines.append(f"same, CPU time: {split(r['cpu_shares'])}")
    return lines


def print_case(row: dict) -> None:
    print(f"\n{row['method']} {row['run']}: batch {row['batch']}, {row['trainable_params']:,} trainable "
          f"parameters, {row['threads']} torch threads, {row['batches']} batches cycled")
    for p in PRECISIONS:
        r = row.get(p)
        if not r:
            continue
        if "error" in r:
            print(f"  {p}: failed: {r['error']}")
            continue
        print(f"  {p}: {r['steps_per_s']:.2f} steps/s ({r['ms_per_step']:.0f} ms/step, median "
              f"{r['ms_per_step_median']:.0f}; {r['cpu_ms_per_step']:.0f} ms CPU/step, "
              f"{100 * r['cpu_share']:.0f}% of {row['threads']} threads' wall time)")
        for line in shares_lines(r):
            print(f"        {line}")
    if "bf16_over_fp32" in row:
        print(f"  bf16/fp32 speed: {row['bf16_over_fp32']:.2f}x by wall time (median of rounds "
              f"{row['bf16_over_fp32_median_of_rounds']:.2f}x), {row['bf16_over_fp32_cpu']:.2f}x by CPU time")
    for note in row["notes"]:
        print(f"  note: {note}")


def print_table(rows: list[dict]) -> None:
    head = (f"{'method':<14}{'run':<17}{'thr':>4}{'fp32 st/s':>10}{'CPU ms':>8}{'bf16 st/s':>10}{'bf16/fp32':>10}"
            f"{'(CPU)':>7}  " + " ".join(f"{p[:5]:>5}" for p in PARTS) + "   (% of an fp32 step)")
    print("\n" + head)
    print("-" * len(head))
    for row in rows:
        f, b = row.get("fp32", {}), row.get("bf16", {})
        fs = f"{f['steps_per_s']:.2f}" if "steps_per_s" in f else "-"
        bs = f"{b['steps_per_s']:.2f}" if "steps_per_s" in b else ("failed" if "error" in b else "-")
        cms = f"{f['cpu_ms_per_step']:.0f}" if "cpu_ms_per_step" in f else "-"
        ratio = f"{row['bf16_over_fp32']:.2f}x" if "bf16_over_fp32" in row else "-"
        cratio = f"{row['bf16_over_fp32_cpu']:.2f}x" if "bf16_over_fp32_cpu" in row else "-"
        shares = f.get("shares") or {}
        print(f"{row['method']:<14}{row['run']:<17}{row['threads']:>4}{fs:>10}{cms:>8}{bs:>10}{ratio:>10}{cratio:>7}  "
              + " ".join(f"{pct(shares.get(p)):>5}" for p in PARTS))


# -- main ------------------------------------------------------------------------------------------
def parse_runs(items: list[str]) -> dict[str, str]:
    runs = dict(DEFAULT_RUNS)
    for item in items:
        method, sep, run = item.partition("=")
        if not sep or method not in METHODS or not run:
            raise SystemExit(f"--run takes METHOD=RUN with METHOD one of {', '.join(METHODS)}; got {item!r}")
        runs[method] = run
    return runs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument("--run", nargs="+", default=[], metavar="METHOD=RUN",
                    help="the run (SMART: style) per method; defaults: "
                         + ", ".join(f"{m}={r}" for m, r in DEFAULT_RUNS.items()))
    ap.add_argument("--steps", type=int, default=20, help="timed steps per precision, after the warm-up")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per precision first")
    ap.add_argument("--profile-steps", type=int, default=None,
                    help="profiled steps per precision (default: --steps; 0: no split)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: the method's train.num_threads, else torch's default)")
    ap.add_argument("--fp32-only", action="store_true", help="skip the bf16 measurement")
    ap.add_argument("--profile", default="cpu", help="params profile whose shapes are used (default cpu)")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure to this file")
    args = ap.parse_args()
    if args.steps < 1 or args.warmup < 0:
        raise SystemExit("--steps must be >= 1 and --warmup >= 0")
    profile_steps = args.steps if args.profile_steps is None else args.profile_steps
    runs = parse_runs(args.run)
    precisions = ["fp32"] if args.fp32_only else list(PRECISIONS)

    os.chdir(REPO)      # params.yaml and the store paths in it are relative to the repository
    from vgs.errors import VgsError
    from vgs.params import Params
    params = Params.load("params.yaml")
    params.data["profile"] = args.profile
    default_threads = torch.get_num_threads()

    cpu = cpu_info()
    load_start = os.getloadavg()
    started = datetime.datetime.now().astimezone()
    print(f"train_step benchmark, {started:%Y-%m-%d %H:%M %Z}; profile {args.profile}; nice {os.nice(0)}; "
          f"load average {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f} at start")
    vm = ", virtual machine" if cpu["hypervisor"] else ""
    amx = " ".join(cpu["amx"]) if cpu["amx"] else "no"
    print(f"CPU: {cpu['model']} ({cpu['logical_cpus']} logical CPUs{vm}); AMX: {amx}; "
          f"avx512_bf16: {'yes' if cpu['avx512_bf16'] else 'no'}; "
          f"torch {cpu['torch']} ({cpu['torch_cpu_capability']}, oneDNN bf16 {cpu['onednn_bf16']})")
    print(f"{args.warmup} warm-up + {args.steps} timed steps per precision ({'/'.join(precisions)} alternating), "
          f"then {profile_steps} profiled steps per precision")

    rows, skipped = [], []
    for method in args.methods:
        run = runs[method]
        torch.set_num_threads(default_threads)
        try:
            cases = BUILDERS[method](params, run)
        except MissingStore as exc:
            stage = building_stage(exc.path, f"{TRAIN_STAGE[method]}@{run}")
            line = f"skip {method} {run}: store {exc.path} is missing; build it with: dvc repro {stage}"
            print(f"\n{line}", flush=True)
            skipped.append({"method": method, "run": run, "missing": exc.path, "build": f"dvc repro {stage}"})
            continue
        except VgsError as exc:
            print(f"\nskip {method} {run}: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""), flush=True)
            skipped.append({"method": method, "run": run, "error": exc.message})
            continue
        for case in cases:
            threads = args.threads or case.threads
            torch.set_num_threads(threads or default_threads)
            result = measure(case, precisions, args.warmup, args.steps, profile_steps)
            row = {"method": case.method, "run": case.run, "batch": case.batch, "batches": case.batches,
                   "threads": torch.get_num_threads(), "trainable_params": case.trainable(),
                   "notes": case.notes, **result}
            print_case(row)
            sys.stdout.flush()
            rows.append(row)
        del cases

    load_end = os.getloadavg()
    if rows:
        print_table(rows)
        print("\nbf16/fp32 is fp32 time over bf16 time on interleaved steps: above 1, bf16 is faster.")
    print(f"Load average {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f} at the end.")
    busy = max(load_start[0], load_end[0]) > (os.cpu_count() or 1)
    starved = [r for r in rows for p in PRECISIONS if r.get(p, {}).get("cpu_share", 1) < 0.5]
    if busy or starved:
        print("note: the machine was busy (load average above its CPU count"
              + (", and this process got under half of its threads' wall time" if starved else "")
              + "): wall times mostly measure waiting for a core. CPU time per step and the ratio by CPU time "
                "suffer least. The profiler's split is by wall time and noisy too; the CPU-time split less so.")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "date": started.isoformat(timespec="seconds"), "profile": args.profile, "nice": os.nice(0),
            "loadavg_start": load_start, "loadavg_end": load_end, "cpu": cpu,
            "settings": {"steps": args.steps, "warmup": args.warmup, "profile_steps": profile_steps,
                         "threads": args.threads, "precisions": precisions},
            "results": rows, "skipped": skipped}, indent=1, default=str))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
