"""Check, or rewrite, the code dependencies that dvc.yaml lists for each stage.

  vgs deps            # exit 1 and name each stage whose code deps differ from its imports
  vgs deps --write    # rewrite the code lines of every stage's deps: in dvc.yaml from the imports
  vgs deps --affected # the stages whose code changed since the `code` stage last wrote their manifest

A stage's code deps are the import closure of its script within vgs/ and pipeline/, plus the
files those modules read ([tool.vgs.deps] resources in pyproject.toml), less the modules that
cannot change a number ([tool.vgs.deps] exempt). dvc.yaml lists one code dep per stage, its
manifest data/code/<stage>.json, which the `code` stage writes. See vgs/utils/code_deps.py.
"""
from __future__ import annotations

import argparse

HELP = "check or rewrite dvc.yaml's code deps against the imports of each stage script"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--write", action="store_true", help="rewrite dvc.yaml instead of checking it")
    parser.add_argument("--affected", action="store_true",
                        help="list the stage definitions whose manifest the next `code` run will change")
    parser.add_argument("--repo", default=None, metavar="DIR", help="project root")
    parser.set_defaults(func=run)


def run(args) -> int:
    from vgs.commands._prefect import project_root
    from vgs.utils.code_deps import affected_stages, disagreements, read_stages, write_dvc_yaml

    root = project_root(args)
    if args.affected:
        changed = affected_stages(root)
        for stage in changed:
            print(stage)
        print(f"{len(changed)} stage definition(s) whose code changed since the last `code` stage run")
        return 0
    if args.write:
        stages = write_dvc_yaml(root)
        print(f"dvc.yaml: code deps of {len(stages)} stage definitions written from their imports")
    problems = disagreements(read_stages(root))
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} disagreement(s); fix with: vgs deps --write")
        return 1
    if not args.write:
        print("dvc.yaml's code deps agree with the imports of every stage script")
    return 0
