"""The one driver of every paper's DVC stages: `python stages/run.py <paper> <step> [<run>]`.

  python stages/run.py leidal2017 train ig2p15e-2     # the stage leidal2017-train@ig2p15e-2, without DVC
  python stages/run.py crabtree2021 report
  python stages/run.py --list                          # every paper and its steps
  torchrun --nproc_per_node 4 stages/run.py crabtree2021 train <run>   # one training on 4 GPUs

Each paper's `vgs/methods/<paper>/recipe.py` names the module that runs each step (vgs/recipe.py).
"""
import argparse
import sys

from vgs.params import Params
from vgs.recipe import METHODS, fixed_threads, papers, recipe_steps, stage_threads, step_function, takes_run
from vgs.train.device import compute_from_params, using
from vgs.train.distributed import is_main, launched_world_size, process_group
from vgs.utils.entry import friendly_errors


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paper", nargs="?", help="a folder of vgs/methods/ with a recipe.py, e.g. leidal2017")
    ap.add_argument("step", nargs="?", help="a step of its recipe, e.g. train")
    ap.add_argument("run", nargs="?", help="for a per-run step: a key of the paper's runs in params.yaml")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars (DVC's logs stay short)")
    ap.add_argument("--list", action="store_true", help="list every paper and its steps")
    args = ap.parse_args(argv)
    if args.list or not args.paper:
        for paper in papers():
            print(f"{paper}: " + ", ".join(recipe_steps(METHODS / paper / "recipe.py")))
        return
    if not args.step:
        ap.error(f"name a step of {args.paper}, e.g. train (--list shows them)")
    stage = step_function(args.paper, args.step)
    if takes_run(stage) != (args.run is not None):
        ap.error(f"{args.paper} {args.step} " + ("needs a run name (a key of the paper's runs in params.yaml)"
                                                 if takes_run(stage) else f"takes no run name (got {args.run!r})"))
    if launched_world_size() > 1 and args.step != "train":
        # Other steps would run N times over the same outputs; only training shares its work.
        ap.error(f"only train steps run under torchrun, not {args.paper} {args.step}: run it with python")
    params = Params.load(args.params)
    progress = not args.no_progress
    with fixed_threads(stage_threads(params)), using(compute_from_params(params)), process_group():
        out = stage(params, args.run, progress=progress) if args.run is not None else stage(params, progress=progress)
        main_process = is_main()
    if main_process:
        print(out)


if __name__ == "__main__":
    sys.exit(main())
