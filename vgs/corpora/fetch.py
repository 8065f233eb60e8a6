"""Fetch downloadable corpora into data/raw/<corpus>/, from a local mirror or upstream.

Every file is checked against sha256 sums recorded in this package (vgs/corpora/checksums/),
never against sums shipped by the source itself. The corpus directory is built in a temporary
sibling and renamed into place only when every file has passed, so a failed or killed fetch
leaves nothing a later stage could read.
"""
from __future__ import annotations

import http.client
import os
import shutil
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tqdm import tqdm

from vgs.corpora.manifest import file_sha256
from vgs.errors import ChecksumError, DataError
from vgs.utils.atomic import atomic_path, atomic_write_json

DEFAULT_UPSTREAM = {
    # The PyTorch mirror of LeCun's original files (yann.lecun.com refuses most clients now).
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fsdd": "https://raw.githubusercontent.com/Jakobovski/free-spoken-digit-dataset/v1.0.10/",
}
SHARED_MIRROR = Path("../shared/data")


@dataclass(frozen=True)
class RemoteFile:
    relpath: str
    sha256: dict  # source kind ("upstream" | "mirror") -> sha256


@dataclass(frozen=True)
class CorpusFiles:
    corpus: str
    files: tuple[RemoteFile, ...]


def _checksum_lines(name: str):
    text = resources.files("vgs.corpora").joinpath("checksums", name).read_text()
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            yield line.split()


def corpus_files(corpus: str) -> CorpusFiles:
    if corpus == "mnist":
        by_file: dict[str, dict] = {}
        for kind, digest, name in _checksum_lines("mnist.sha256"):
            by_file.setdefault(name, {})[kind] = digest
        return CorpusFiles("mnist", tuple(RemoteFile(n, d) for n, d in by_file.items()))
    if corpus == "fsdd":
        files = tuple(RemoteFile(rel, {"upstream": d, "mirror": d})
                      for d, rel in _checksum_lines("fsdd-v1.0.10.sha256"))
        return CorpusFiles("fsdd", files)
    raise DataError(f"corpus {corpus!r} cannot be fetched",
                    hint="only mnist and fsdd are downloadable; point corpora.<name>.root at a corpus you own")


def resolve_mirror(configured: str | None, repo_root: Path = Path(".")) -> Path | None:
    """The mirror directory to read from, or None to download.

    Order: $VGS_DATA_MIRROR, then `data.mirror` unless it is `auto`, then ../shared/data when it
    exists (the workplace mirror, so CI needs no flags). `none` forces a download.
    """
    env = os.environ.get("VGS_DATA_MIRROR")
    choice = env if env else configured
    if choice in (None, "", "auto"):
        candidate = (repo_root / SHARED_MIRROR).resolve()
        return candidate if candidate.is_dir() else None
    if choice == "none":
        return None
    path = Path(choice).expanduser()
    if not path.is_absolute():
        path = (repo_root / path).resolve()
    if not path.is_dir():
        origin = "$VGS_DATA_MIRROR" if env else "data.mirror"
        raise DataError(f"mirror directory {path} (from {origin}) does not exist",
                        hint="fix the path, or set data.mirror to `auto` or `none` to download")
    return path


def _verify(path: Path, rf: RemoteFile, kind: str, corpus: str) -> None:
    digest = file_sha256(path)
    expected = rf.sha256.get(kind)
    if digest != expected:
        raise ChecksumError(
            f"{corpus}/{rf.relpath}: sha256 {digest} does not match the recorded {kind} sum {expected}",
            hint="the source copy is damaged or not the recorded release; nothing was written. "
                 "Remove the bad file from the mirror or fetch from upstream (data.mirror: none)")


def _download(url: str, dest: Path, attempts: int = 3, show_bytes: bool = False) -> None:
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                bar = tqdm(total=total, unit="B", unit_scale=True, desc=dest.name,
                           disable=not show_bytes, leave=False)
                written = 0
                with open(dest, "wb") as f:
                    while block := resp.read(1 << 16):
                        f.write(block)
                        written += len(block)
                        bar.update(len(block))
                bar.close()
                # http.client ends a sized read quietly when the server hangs up early.
                if total is not None and written < total:
                    raise ConnectionError(f"connection closed after {written} of {total} bytes")
            return
        except urllib.error.HTTPError as exc:
            if exc.code == 404 or attempt == attempts:
                raise DataError(f"download of {url} failed: HTTP {exc.code}",
                                hint="check data.upstream or use a local mirror (VGS_DATA_MIRROR)") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            # HTTPException covers a connection cut mid-body (IncompleteRead).
            if attempt == attempts:
                raise DataError(f"download of {url} failed: {exc}",
                                hint="no network? point VGS_DATA_MIRROR at a local copy") from None
        time.sleep(2 ** attempt)


def _already_complete(dest: Path, spec: CorpusFiles) -> bool:
    marker = dest / ".fetched.json"
    if not marker.exists():
        return False
    import json
    kind = json.loads(marker.read_text()).get("source_kind", "")
    try:
        for rf in spec.files:
            _verify(dest / rf.relpath, rf, kind, spec.corpus)
    except (ChecksumError, FileNotFoundError):
        return False
    return True


def fetch_corpus(corpus: str, dest: str | Path, mirror: Path | None = None,
                 upstream: str | None = None, spec: CorpusFiles | None = None,
                 workers: int = 8) -> str:
    """Materialise `corpus` at `dest`. Returns the source kind used ("mirror" or "upstream").

    A complete, verified `dest` is left alone, so re-running is a no-op.
    """
    dest = Path(dest)
    spec = spec or corpus_files(corpus)
    if _already_complete(dest, spec):
        print(f"{corpus}: {dest} is complete and verified; nothing to do")
        return "present"
    if mirror is not None:
        src_dir = Path(mirror) / corpus
        if not src_dir.is_dir():
            raise DataError(f"mirror {mirror} has no {corpus}/ directory",
                            hint=f"expected {src_dir}/ laid out like upstream, or unset the mirror")
        kind, where = "mirror", str(src_dir)
    else:
        kind, where = "upstream", (upstream or DEFAULT_UPSTREAM[corpus])
        if not where.endswith("/"):
            where += "/"

    def one(tmp: Path, rf: RemoteFile) -> None:
        target = tmp / rf.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        if kind == "mirror":
            src = Path(where) / rf.relpath
            if not src.exists():
                raise DataError(f"{src} is missing from the mirror",
                                hint="the mirror is incomplete; repair it or fetch from upstream")
            shutil.copyfile(src, target)
        else:
            _download(where + rf.relpath, target, show_bytes=len(spec.files) < 10)
        _verify(target, rf, kind, corpus)

    print(f"{corpus}: fetching {len(spec.files)} files from {kind} {where}")
    with atomic_path(dest) as tmp:
        tmp.mkdir(parents=True)
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            futures = [pool.submit(one, tmp, rf) for rf in spec.files]
            for fut in tqdm(futures, desc=f"fetch {corpus}", unit="file"):
                fut.result()
        finally:
            # On the first failure, drop the queued files instead of fetching them for nothing.
            pool.shutdown(wait=True, cancel_futures=True)
        atomic_write_json(tmp / ".fetched.json",
                          {"corpus": corpus, "source_kind": kind, "num_files": len(spec.files)})
    return kind
