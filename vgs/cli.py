"""The `vgs` command: `vgs <command> <subcommand> ...`.

Commands live in their own modules, listed in COMMANDS. To add one, write a module with

    HELP = "one line for `vgs --help`"
    def register(parser: argparse.ArgumentParser) -> None:
        # add arguments or sub-subcommands; set `func` (args -> exit code) with set_defaults
        ...

and add it to COMMANDS. Every command module is imported to build `vgs --help`, so keep its
top-level imports light and import heavy libraries (torch, prefect, zarr) inside the handler.
VgsErrors raised by a handler print as one message with its fix (exit code 2).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from vgs.utils.entry import friendly_errors

COMMANDS = {
    "store": "vgs.commands.store",
    # dvc.yaml's code deps, derived from each stage script's imports.
    "deps": "vgs.commands.deps",
    # dvc repro with independent stages at once (make run).
    "repro": "vgs.commands.repro",
    # Prefect orchestration (pipeline/): server + UI, one-off flow, schedules, workers, sweeps,
    # and the CPU budget they share.
    "ui": "vgs.commands.ui",
    "flow": "vgs.commands.flow",
    "schedule": "vgs.commands.schedule",
    "worker": "vgs.commands.worker",
    "sweep": "vgs.commands.sweep",
    "threads": "vgs.commands.threads",
}


def build_parser() -> argparse.ArgumentParser:
    import vgs

    parser = argparse.ArgumentParser(prog="vgs", description="Joint speech-image representation learning: "
                                     "tools around the DVC pipeline (run it with `dvc repro`).")
    parser.add_argument("--version", action="version", version=f"vgs {vgs.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        command.set_defaults(_parser=command)
        module.register(command)
    return parser


@friendly_errors
def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        # `vgs` or `vgs store` alone: show the help of the level the user reached.
        getattr(args, "_parser", parser).print_help()
        return 2
    return int(func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
