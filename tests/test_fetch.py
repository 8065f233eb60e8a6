"""fetch: downloads over real HTTP (a server on 127.0.0.1), mirror copies, checksums, atomicity."""
import hashlib
import http.server
import json
import os
import shutil
import threading
from functools import partial
from pathlib import Path

import pytest

import vgs.corpora.fetch as fetch_mod
from vgs.corpora.fetch import CorpusFiles, RemoteFile, corpus_files, fetch_corpus, resolve_mirror
from vgs.errors import ChecksumError, DataError

REPO = Path(__file__).resolve().parent.parent
SHARED = (REPO / "../shared/data").resolve()

TINY_FILES = {
    "a.bin": b"alpha " * 100,
    "sub/b.bin": bytes(range(256)) * 1200,  # 300 KB: several read blocks, a real progress bar
    "sub/c.txt": b"seven three\n",
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tiny_spec(kinds=("upstream", "mirror")) -> CorpusFiles:
    return CorpusFiles("tiny", tuple(RemoteFile(rel, {k: sha(data) for k in kinds})
                                     for rel, data in TINY_FILES.items()))


def write_tree(root: Path, files: dict) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves `directory`, plus misbehaving variants by path prefix:
    /nolength/...   no Content-Length (the size is unknown to the progress bar)
    /cut/...        promises the full length, sends 10 bytes, closes
    /flaky/...      503 on the first request for each path, then the file
    """

    requests: list
    flaky_seen: set

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.requests.append(self.path)
        for prefix in ("/nolength/", "/cut/", "/flaky/"):
            if self.path.startswith(prefix):
                rel = self.path[len(prefix):]
                path = Path(self.directory) / rel
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                if prefix == "/flaky/" and rel not in self.flaky_seen:
                    self.flaky_seen.add(rel)
                    self.send_error(503)
                    return
                self.send_response(200)
                if prefix != "/nolength/":
                    self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data[:10] if prefix == "/cut/" else data)
                self.close_connection = True
                return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """An HTTP server on a free port of 127.0.0.1 serving tmp_path/www (laid out like the mirror)."""
    root = tmp_path / "www"
    root.mkdir()
    requests: list = []
    handler = type("H", (Handler,), {"requests": requests, "flaky_seen": set()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield {"root": root, "url": f"http://127.0.0.1:{httpd.server_address[1]}", "requests": requests}
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def no_retry_wait(monkeypatch):
    monkeypatch.setattr(fetch_mod.time, "sleep", lambda s: None)


def leftovers(dest: Path) -> list:
    return sorted(p.name for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}.tmp-"))


def test_upstream_download_verifies_and_marks(server, tmp_path, capfd):
    write_tree(server["root"] / "tiny", TINY_FILES)
    dest = tmp_path / "raw" / "tiny"
    kind = fetch_corpus("tiny", dest, mirror=None, upstream=server["url"] + "/tiny", spec=tiny_spec())
    assert kind == "upstream"
    for rel, data in TINY_FILES.items():
        assert (dest / rel).read_bytes() == data
    marker = json.loads((dest / ".fetched.json").read_text())
    assert marker == {"corpus": "tiny", "source_kind": "upstream", "num_files": len(TINY_FILES)}
    assert sorted(server["requests"]) == sorted(f"/tiny/{rel}" for rel in TINY_FILES)
    assert leftovers(dest) == []
    # The progress bars went to stderr and did not disturb anything.
    assert "fetch tiny" in capfd.readouterr().err


def test_download_without_content_length(server, tmp_path):
    write_tree(server["root"] / "tiny", TINY_FILES)
    dest = tmp_path / "raw" / "tiny"
    fetch_corpus("tiny", dest, upstream=server["url"] + "/nolength/tiny/", spec=tiny_spec())
    assert (dest / "sub/b.bin").read_bytes() == TINY_FILES["sub/b.bin"]


def test_checksum_failure_names_file_and_leaves_nothing(server, tmp_path):
    bad = dict(TINY_FILES)
    corrupted = bytearray(bad["sub/b.bin"])
    corrupted[1000] ^= 0x01
    bad["sub/b.bin"] = bytes(corrupted)
    write_tree(server["root"] / "tiny", bad)
    dest = tmp_path / "raw" / "tiny"
    with pytest.raises(ChecksumError) as err:
        fetch_corpus("tiny", dest, upstream=server["url"] + "/tiny/", spec=tiny_spec(), workers=1)
    message = str(err.value)
    assert "tiny/sub/b.bin" in message and sha(bad["sub/b.bin"]) in message
    assert "nothing was written" in message
    assert not dest.exists()
    assert list((tmp_path / "raw").iterdir()) == []  # no partial directory, no temporary


def test_checksum_failure_keeps_an_earlier_complete_copy_intact(server, tmp_path):
    write_tree(server["root"] / "tiny", TINY_FILES)
    dest = tmp_path / "raw" / "tiny"
    fetch_corpus("tiny", dest, upstream=server["url"] + "/tiny/", spec=tiny_spec())
    (dest / ".fetched.json").unlink()  # force a refetch
    (server["root"] / "tiny/a.bin").write_bytes(b"tampered")
    with pytest.raises(ChecksumError, match="tiny/a.bin"):
        fetch_corpus("tiny", dest, upstream=server["url"] + "/tiny/", spec=tiny_spec())
    assert (dest / "a.bin").read_bytes() == TINY_FILES["a.bin"]
    assert leftovers(dest) == []


def test_http_404_is_a_clear_error(server, tmp_path):
    files = dict(TINY_FILES)
    files.pop("sub/c.txt")
    write_tree(server["root"] / "tiny", files)
    dest = tmp_path / "raw" / "tiny"
    with pytest.raises(DataError) as err:
        fetch_corpus("tiny", dest, upstream=server["url"] + "/tiny/", spec=tiny_spec())
    assert "HTTP 404" in str(err.value) and "/tiny/sub/c.txt" in str(err.value)
    assert "fix:" in str(err.value)
    assert not dest.exists() and leftovers(dest) == []
    # 404 is final: not retried.
    assert server["requests"].count("/tiny/sub/c.txt") == 1


def test_transient_server_error_is_retried(server, tmp_path):
    write_tree(server["root"] / "tiny", TINY_FILES)
    dest = tmp_path / "raw" / "tiny"
    assert fetch_corpus("tiny", dest, upstream=server["url"] + "/flaky/tiny/", spec=tiny_spec()) == "upstream"
    assert server["requests"].count("/flaky/tiny/a.bin") == 2
    assert (dest / "a.bin").read_bytes() == TINY_FILES["a.bin"]


def test_connection_cut_mid_file_is_a_clear_error(server, tmp_path):
    write_tree(server["root"] / "tiny", TINY_FILES)
    dest = tmp_path / "raw" / "tiny"
    with pytest.raises(DataError, match="download of .*/cut/tiny/a.bin failed: connection closed after 10 of 600"):
        fetch_corpus("tiny", dest, upstream=server["url"] + "/cut/tiny/", spec=tiny_spec(), workers=1)
    assert server["requests"].count("/cut/tiny/a.bin") == 3  # retried, then reported
    assert not dest.exists() and leftovers(dest) == []


def test_unreachable_server_is_a_clear_error(tmp_path):
    # A port nobody listens on: bind one, close it, use it.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dest = tmp_path / "raw" / "tiny"
    with pytest.raises(DataError, match="VGS_DATA_MIRROR"):
        fetch_corpus("tiny", dest, upstream=f"http://127.0.0.1:{port}/tiny/", spec=tiny_spec(), workers=1)
    assert not dest.exists()


def test_mirror_copy(tmp_path):
    mirror = tmp_path / "mirror"
    write_tree(mirror / "tiny", TINY_FILES)
    dest = tmp_path / "raw" / "tiny"
    assert fetch_corpus("tiny", dest, mirror=mirror, spec=tiny_spec(("mirror",))) == "mirror"
    for rel, data in TINY_FILES.items():
        assert (dest / rel).read_bytes() == data
    assert json.loads((dest / ".fetched.json").read_text())["source_kind"] == "mirror"
    assert leftovers(dest) == []


def test_mirror_files_are_checked_against_mirror_sums(tmp_path):
    # MNIST's mirror holds re-gzipped files: the mirror entry must be used, not the upstream one.
    mirror = tmp_path / "mirror"
    write_tree(mirror / "tiny", TINY_FILES)
    spec = CorpusFiles("tiny", tuple(RemoteFile(rel, {"upstream": sha(b"other"), "mirror": sha(data)})
                                     for rel, data in TINY_FILES.items()))
    assert fetch_corpus("tiny", tmp_path / "raw" / "tiny", mirror=mirror, spec=spec) == "mirror"
    spec_upstream_only = CorpusFiles("tiny", tuple(RemoteFile(rel, {"upstream": sha(data)})
                                                   for rel, data in TINY_FILES.items()))
    with pytest.raises(ChecksumError, match="mirror sum None"):
        fetch_corpus("tiny", tmp_path / "raw2" / "tiny", mirror=mirror, spec=spec_upstream_only)


def test_mirror_missing_file(tmp_path):
    mirror = tmp_path / "mirror"
    files = dict(TINY_FILES)
    files.pop("sub/b.bin")
    write_tree(mirror / "tiny", files)
    dest = tmp_path / "raw" / "tiny"
    with pytest.raises(DataError) as err:
        fetch_corpus("tiny", dest, mirror=mirror, spec=tiny_spec())
    assert str(mirror / "tiny" / "sub/b.bin") in str(err.value) and "missing from the mirror" in str(err.value)
    assert not dest.exists() and leftovers(dest) == []


def test_mirror_without_corpus_directory(tmp_path):
    (tmp_path / "mirror").mkdir()
    with pytest.raises(DataError, match="has no tiny/ directory"):
        fetch_corpus("tiny", tmp_path / "raw" / "tiny", mirror=tmp_path / "mirror", spec=tiny_spec())


def test_rerun_is_a_no_op(server, tmp_path):
    write_tree(server["root"] / "tiny", TINY_FILES)
    dest = tmp_path / "raw" / "tiny"
    fetch_corpus("tiny", dest, upstream=server["url"] + "/tiny/", spec=tiny_spec())
    mtimes = {p: p.stat().st_mtime_ns for p in dest.rglob("*")}
    n_requests = len(server["requests"])
    assert fetch_corpus("tiny", dest, upstream=server["url"] + "/tiny/", spec=tiny_spec()) == "present"
    assert len(server["requests"]) == n_requests  # nothing downloaded
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*")} == mtimes  # nothing rewritten


def test_damaged_or_unmarked_copy_is_fetched_again(server, tmp_path):
    write_tree(server["root"] / "tiny", TINY_FILES)
    dest = tmp_path / "raw" / "tiny"
    url = server["url"] + "/tiny/"
    fetch_corpus("tiny", dest, upstream=url, spec=tiny_spec())
    (dest / "a.bin").write_bytes(b"damaged")
    assert fetch_corpus("tiny", dest, upstream=url, spec=tiny_spec()) == "upstream"
    assert (dest / "a.bin").read_bytes() == TINY_FILES["a.bin"]
    # A directory without the completion marker (e.g. copied by hand) is replaced, stray files go.
    (dest / ".fetched.json").unlink()
    (dest / "stray.txt").write_text("x")
    assert fetch_corpus("tiny", dest, upstream=url, spec=tiny_spec()) == "upstream"
    assert not (dest / "stray.txt").exists() and leftovers(dest) == []


def test_stale_temporaries_of_a_killed_fetch_are_removed(server, tmp_path):
    write_tree(server["root"] / "tiny", TINY_FILES)
    dest = tmp_path / "raw" / "tiny"
    stale = tmp_path / "raw" / ".tiny.tmp-deadbeef"
    stale.mkdir(parents=True)
    (stale / "a.bin").write_bytes(b"half")
    fetch_corpus("tiny", dest, upstream=server["url"] + "/tiny/", spec=tiny_spec())
    assert not stale.exists()


# -- where the mirror comes from ------------------------------------------------------------------
@pytest.fixture
def repo_layout(tmp_path, monkeypatch):
    monkeypatch.delenv("VGS_DATA_MIRROR", raising=False)
    repo = tmp_path / "work" / "main"
    repo.mkdir(parents=True)
    return repo


def test_resolve_mirror_auto_uses_shared_data_next_to_the_repo(repo_layout):
    assert resolve_mirror("auto", repo_layout) is None  # no ../shared/data: download
    assert resolve_mirror(None, repo_layout) is None
    shared = repo_layout.parent / "shared" / "data"
    shared.mkdir(parents=True)
    assert resolve_mirror("auto", repo_layout) == shared.resolve()
    assert resolve_mirror(None, repo_layout) == shared.resolve()


def test_resolve_mirror_order_and_none(repo_layout, monkeypatch, tmp_path):
    (repo_layout.parent / "shared" / "data").mkdir(parents=True)
    configured = tmp_path / "configured"
    configured.mkdir()
    from_env = tmp_path / "from_env"
    from_env.mkdir()
    assert resolve_mirror(str(configured), repo_layout) == configured
    assert resolve_mirror("none", repo_layout) is None
    monkeypatch.setenv("VGS_DATA_MIRROR", str(from_env))
    assert resolve_mirror(str(configured), repo_layout) == from_env  # the variable wins
    assert resolve_mirror("none", repo_layout) == from_env
    monkeypatch.setenv("VGS_DATA_MIRROR", "none")
    assert resolve_mirror(str(configured), repo_layout) is None
    monkeypatch.setenv("VGS_DATA_MIRROR", "")  # empty means unset
    assert resolve_mirror(str(configured), repo_layout) == configured


def test_resolve_mirror_relative_path_is_relative_to_the_repo(repo_layout):
    (repo_layout / "mymirror").mkdir()
    assert resolve_mirror("mymirror", repo_layout) == (repo_layout / "mymirror").resolve()


def test_resolve_mirror_missing_directory_is_an_error(repo_layout, monkeypatch, tmp_path):
    with pytest.raises(DataError) as err:
        resolve_mirror(str(tmp_path / "nowhere"), repo_layout)
    assert str(tmp_path / "nowhere") in str(err.value) and "data.mirror" in str(err.value)
    monkeypatch.setenv("VGS_DATA_MIRROR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"\$VGS_DATA_MIRROR"):
        resolve_mirror("auto", repo_layout)


def test_unknown_corpus_cannot_be_fetched():
    with pytest.raises(DataError, match="'tidigits' cannot be fetched"):
        corpus_files("tidigits")


def test_recorded_checksums_cover_both_corpora():
    mnist = corpus_files("mnist")
    assert len(mnist.files) == 4 and all(set(f.sha256) == {"upstream", "mirror"} for f in mnist.files)
    fsdd = corpus_files("fsdd")
    assert len(fsdd.files) == 3000 and all(f.relpath.startswith("recordings/") for f in fsdd.files)


# -- the real corpora from the workplace mirror ---------------------------------------------------
@pytest.mark.skipif(not SHARED.is_dir(), reason="no ../shared/data mirror on this machine")
def test_real_mirror_fetch_of_mnist_and_fsdd(tmp_path):
    for corpus, n in (("mnist", 4), ("fsdd", 3000)):
        dest = tmp_path / "raw" / corpus
        assert fetch_corpus(corpus, dest, mirror=SHARED) == "mirror"
        files = [p for p in dest.rglob("*") if p.is_file() and p.name != ".fetched.json"]
        assert len(files) == n
        assert fetch_corpus(corpus, dest, mirror=SHARED) == "present"


@pytest.mark.skipif(not SHARED.is_dir(), reason="no ../shared/data mirror on this machine")
def test_real_mirror_served_over_http_with_a_corrupt_copy(server, tmp_path):
    """The download path against the real MNIST bytes: a faithful copy passes the recorded sums
    (the mirror's, since the served files are the mirror's re-gzipped ones); one flipped byte fails."""
    names = [f.relpath for f in corpus_files("mnist").files]
    spec = CorpusFiles("mnist", tuple(RemoteFile(f.relpath, {"upstream": f.sha256["mirror"]})
                                      for f in corpus_files("mnist").files))
    for name in names:
        shutil.copyfile(SHARED / "mnist" / name, server["root"] / name)
    dest = tmp_path / "raw" / "mnist"
    assert fetch_corpus("mnist", dest, upstream=server["url"], spec=spec) == "upstream"
    label_file = server["root"] / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(label_file.read_bytes())
    data[-3] ^= 0xFF
    label_file.write_bytes(bytes(data))
    dest2 = tmp_path / "raw2" / "mnist"
    with pytest.raises(ChecksumError, match="t10k-labels-idx1-ubyte.gz"):
        fetch_corpus("mnist", dest2, upstream=server["url"], spec=spec)
    assert not dest2.exists() and list((tmp_path / "raw2").iterdir()) == []


def test_fetch_stage_prints_one_friendly_error(tmp_path):
    import subprocess
    import sys

    import yaml

    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "params.yaml").write_text(yaml.safe_dump({"data": {"mirror": str(tmp_path / "nowhere")}}))
    env = {k: v for k, v in os.environ.items() if k not in ("VGS_DATA_MIRROR", "VGS_TRACEBACK")}
    env["PYTHONPATH"] = str(REPO)
    stage = [sys.executable, str(REPO / "stages" / "fetch.py"), "fsdd"]
    result = subprocess.run(stage, cwd=proj, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"error: mirror directory {tmp_path / 'nowhere'} (from data.mirror) does not exist" in result.stderr
    assert "fix: fix the path" in result.stderr
    (tmp_path / "empty_mirror").mkdir()
    env["VGS_DATA_MIRROR"] = str(tmp_path / "empty_mirror")
    result = subprocess.run(stage, cwd=proj, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "has no fsdd/ directory" in result.stderr
    assert not (proj / "data" / "raw" / "fsdd").exists()
