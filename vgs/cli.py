"""The `vgs` command. Stage scripts and the Prefect helpers are reachable from here too."""
import sys


def main(argv=None):
    print("vgs: see `vgs --help`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
