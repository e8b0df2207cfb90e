"""Bodies are refused before they are read: without a token at once, and past their cap while
they stream (JSON and forms at 1 MiB, uploads at the import limit), whatever they claim.

A real HTTP server (uvicorn, in a thread) and a raw socket that streams the body: the test
counts what the server let in before it answered, and how much the process's memory and the
temporary folder grew meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import resource
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest

from labelwise.server import ServerConfig, create_app
from labelwise.server.limits import MAX_JSON, MULTIPART_SLACK
from labelwise.server.routes.projects import MAX_UPLOAD
from threaded_server import ThreadedServer

CHUNK = 256 * 1024
#: What the kernel's socket buffers and the server's read-ahead may hold beyond a cap.
BUFFERS = 32 * 2**20


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _stream(base: str, path: str, headers: dict[str, str], head: bytes, size: int):
    """POST ``size`` bytes (``head``, then spaces) chunked; (status, error, bytes sent)."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Transfer-Encoding: chunked"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    sent = 0
    piece = b" " * CHUNK
    try:
        first = head
        while sent < size:
            data = first or piece[: min(CHUNK, size - sent)]
            first = b""
            sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            sent += len(data)
        sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server answered and closed: it stopped reading
    sock.settimeout(30)
    answer = b""
    try:
        while b"\r\n\r\n" not in answer or len(answer) < 12:
            got = sock.recv(65536)
            if not got:
                break
            answer += got
        time.sleep(0.05)
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            answer += sock.recv(65536)
    finally:
        sock.close()
    status = int(answer.split(b" ", 2)[1])
    body = answer.split(b"\r\n\r\n", 1)[1]
    error = json.loads(body[body.index(b"{") :])["error"] if b"{" in body else ""
    return status, error, sent


@pytest.fixture
def live(served):
    with ThreadedServer(create_app(ServerConfig(served.project))) as base:
        yield served, base


@pytest.mark.parametrize("credentials", ["none", "unknown", "other project"])
def test_a_body_without_a_valid_token_is_refused_before_it_is_read(live, credentials):
    s, base = live
    headers = {"Content-Type": "application/json"}
    if credentials == "unknown":
        headers["Authorization"] = "Bearer not-a-token"
    elif credentials == "other project":
        from labelwise.store.annotators import create_annotator
        from labelwise.store.projects import create_project

        with s.project.db.write() as session:
            other = create_project(session, name="theirs", kind="text", labels=["a", "b"])
            token = create_annotator(session, other, name="m", role="admin")[1]
        headers["Authorization"] = f"Bearer {token}"
    before = _rss_mib()
    status, error, sent = _stream(base, s.api("/next"), headers, b'{"pad": "', 1024**3)
    assert status == 401 and error
    assert sent < BUFFERS  # a gigabyte offered; the answer came before it was read
    assert _rss_mib() - before < 100


def test_a_json_body_is_cut_off_past_its_cap(live):
    s, base = live
    before = _rss_mib()
    headers = {**s.h(s.alice), "Content-Type": "application/json"}
    status, error, sent = _stream(base, s.api("/next"), headers, b'{"pad": "', 1024**3)
    assert status == 413 and error == "a request body may be at most 1 MiB"
    assert sent < MAX_JSON + BUFFERS
    assert _rss_mib() - before < 100
    # a body that says its length up front is refused without reading
    r = s.client.post(s.api("/next"), content=b"x" * (MAX_JSON + 1), headers=headers)
    assert r.status_code == 413
    assert s.client.post(s.api("/next"), json={}, headers=s.h(s.alice)).status_code in (200, 204)


def test_an_upload_is_cut_off_at_the_import_limit_while_it_streams(live):
    s, base = live
    boundary = "labelwise-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
        "Content-Type: text/csv\r\n\r\nid,text\r\n"
    ).encode()
    spool = Path(tempfile.gettempdir())
    free = shutil.disk_usage(spool).free
    before = _rss_mib()
    headers = {**s.h(s.admin), "Content-Type": f"multipart/form-data; boundary={boundary}"}
    status, error, sent = _stream(base, s.api("/import"), headers, head, 3 * 1024**3)
    assert status == 413 and error.startswith("an upload may be at most")
    assert sent < MAX_UPLOAD + MULTIPART_SLACK + BUFFERS  # three gigabytes offered
    assert _rss_mib() - before < 100
    # whatever was spooled went with the request: the disk has what it had
    assert free - shutil.disk_usage(spool).free < 64 * 2**20
    stats = s.client.get(s.api("/stats"), headers=s.h(s.admin)).json()
    assert stats["progress"]["items"] == 60  # nothing imported
