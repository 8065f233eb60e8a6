"""DVC stage `code`: write data/code/<stage>.json, the files each stage's script can run (its import
closure within vgs/ and pipeline/, see vgs/utils/code_deps.py) with their SHA-256.

It depends on the source folders, so any edit runs it; a manifest whose files did not change is
rewritten byte for byte, and DVC then leaves its stages alone."""
import argparse

from vgs.utils.code_deps import MANIFEST_DIR, write_manifests
from vgs.utils.entry import friendly_errors, repo_root


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.parse_args(argv)
    stages = write_manifests(repo_root())
    print(f"{MANIFEST_DIR}: code manifests of {len(stages)} stage definitions")


if __name__ == "__main__":
    main()
