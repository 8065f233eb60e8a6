"""DVC stage smart-train@<style>: reciprocating training of SMART in the hybrid or classroom style
(from scratch, or resumed after a kill: vgs/train/provenance.py says when)."""
import argparse

from vgs.methods.smart.train import STYLES, run_dir, train_style
from vgs.params import Params
from vgs.train.provenance import stage_provenance
from vgs.utils.entry import friendly_errors


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("style", help="a key of smart.styles in params.yaml: " + ", ".join(STYLES))
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    params = Params.load(args.params)
    s = train_style(params, args.style, progress=not args.no_progress,
                    provenance=stage_provenance(f"smart-train@{args.style}"))
    print(f"{run_dir(args.style)}: {s['phases']} phases, {s['steps']} steps on {s['data']}; "
          f"{s['wall_seconds']:.0f} s wall, {s['cpu_seconds']:.0f} s CPU (profile {params.profile()})")


if __name__ == "__main__":
    main()
