"""The download path against a real HTTP server on 127.0.0.1 ($NORMEXP_MIRROR pointing at it), serving a small file in
MNIST's real format (gzip of an idx file): a clean download, a checksum mismatch, a 404, a connection dropped
mid-file, and two processes downloading the same file at once. A failed download leaves no file behind."""
import gzip
import hashlib
import http.server
import struct
import subprocess
import sys
import threading
import time

import pytest

from normexp.tasks.files import DataError, FileSpec, fetch
from tests.conftest import REPO

LABELS = gzip.compress(struct.pack(">II", 2049, 6000) + bytes(i % 10 for i in range(6000)), mtime=0)
RELPATH = "mnist/t10k-labels-idx1-ubyte.gz"
SPEC = FileSpec(RELPATH, sha256=hashlib.sha256(LABELS).hexdigest(), urls=("http://example.invalid/never-used",))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        mode, _, relpath = self.path.lstrip("/").partition("/")
        if relpath != RELPATH or mode == "missing":
            self.send_error(404)
            return
        body = LABELS if mode != "corrupt" else LABELS[:-8] + b"\0" * 8
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "drop":  # half the promised bytes, then the connection closes
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        for i in range(0, len(body), 4096):  # slowly: concurrent downloads overlap
            self.wfile.write(body[i:i + 4096])
            time.sleep(0.05 if mode == "slow" else 0)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.delenv("NORMEXP_DATA_ROOT", raising=False)
    monkeypatch.setenv("NORMEXP_DOWNLOAD_DIR", str(tmp_path))
    return tmp_path


def leftovers(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_clean_download_from_the_mirror(server, folder, monkeypatch):
    monkeypatch.setenv("NORMEXP_MIRROR", f"{server}/ok/")
    path = fetch(SPEC)
    assert path == folder / RELPATH and path.read_bytes() == LABELS and leftovers(folder) == [path.name]
    assert fetch(SPEC) == path  # found, verified, not downloaded again


@pytest.mark.parametrize("mode, message", [("corrupt", "wrong checksum"), ("missing", "404"),
                                           ("drop", "dropped after|IncompleteRead")])
def test_a_failed_download_leaves_no_file(server, folder, monkeypatch, mode, message):
    monkeypatch.setenv("NORMEXP_MIRROR", f"{server}/{mode}")
    with pytest.raises(DataError, match=message) as error:
        fetch(SPEC)
    assert f"{server}/{mode}/{RELPATH}" in str(error.value)  # the mirror URL, not the public one
    assert leftovers(folder) == []


def test_two_processes_download_the_same_file_at_once(server, folder):
    code = "from tests.tasks.test_downloads import SPEC; from normexp.tasks.files import fetch; print(fetch(SPEC))"
    env = {"NORMEXP_MIRROR": f"{server}/slow", "NORMEXP_DOWNLOAD_DIR": str(folder), "PYTHONPATH": str(REPO),
           "PATH": "/usr/bin:/bin"}
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert (folder / RELPATH).read_bytes() == LABELS and leftovers(folder) == [(folder / RELPATH).name]
