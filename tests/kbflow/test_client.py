"""kbflow.client: where the service's socket may be, who may answer on it, what is sent (issue 26 #1).

Real sockets, a real second uid (the tests run as root and drop to `nobody` in a child), no service:
a fake one that records every byte it receives.
"""

from __future__ import annotations

import json
import os
import re
import socket
import socketserver
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from kbflow.client import (
    Client, ServiceUnavailable, UnsafeService, checked_socket_path, code_hash, environment_digest, private_dir,
    socket_path,
)
from kbflow.config import load_config

from conftest import DOCS_SOURCE, write_config

NOBODY = 65534


def config_at(root: Path):
    root.mkdir(parents=True, exist_ok=True)
    return load_config(write_config(root, DOCS_SOURCE))


def test_a_private_folder_is_created_0700_and_a_wider_or_foreign_one_is_refused(tmp_path):
    made = private_dir(tmp_path / "a" / "service")
    assert made.stat().st_mode & 0o777 == 0o700  # positive control: ours, 0700, accepted

    wide = tmp_path / "wide"
    wide.mkdir(mode=0o755)
    wide.chmod(0o755)
    with pytest.raises(UnsafeService, match="mode 755"):
        private_dir(wide)
    if os.getuid() == 0:
        foreign = tmp_path / "foreign"
        foreign.mkdir(mode=0o700)
        os.chown(foreign, NOBODY, NOBODY)
        with pytest.raises(UnsafeService, match="belongs to uid"):
            private_dir(foreign)
    link = tmp_path / "link"
    link.symlink_to(made)
    with pytest.raises(UnsafeService, match="not a folder"):
        private_dir(link)


def test_a_long_store_path_puts_the_socket_in_a_per_user_0700_folder_never_the_shared_temp(tmp_path, monkeypatch):
    short = config_at(tmp_path / "short")
    assert socket_path(short) == Path(short.store.uri) / "service" / "kbflow.sock"
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "runtime"))
    (tmp_path / "runtime").mkdir(mode=0o700)
    long = config_at(deep)
    path = checked_socket_path(long)
    assert path.is_relative_to(tmp_path / "runtime" / "kbflow") and len(str(path)) < 108
    assert path.parent.stat().st_mode & 0o777 == 0o700 and (path.parent.parent.stat().st_mode & 0o777) == 0o700
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert socket_path(long).is_relative_to(tmp_path / "home" / ".cache" / "kbflow" / "run")


class Recorder(socketserver.UnixStreamServer):
    """An HTTP server on a Unix socket that answers as a kbflow service would and keeps every byte."""

    def __init__(self, path: Path, store: str) -> None:
        self.received, self.store = bytearray(), store

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(handler) -> None:
                handler.server.received += handler.requestline.encode()
                self._answer(handler, {"code_hash": code_hash(), "store": self.store, "pid": 1})

            def do_POST(handler) -> None:
                body = handler.rfile.read(int(handler.headers["Content-Length"]))
                handler.server.received += str(handler.headers).encode()
                handler.server.received += body
                self._answer(handler, None, b'{"result": {"results": [[]], "warning": null}}\n')

        super().__init__(str(path), Handler)

    @staticmethod
    def _answer(handler, value, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(value).encode()
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


def test_the_client_sends_the_command_and_config_overrides_never_the_environment(tmp_path, monkeypatch):
    config = config_at(tmp_path / "kb")
    path = checked_socket_path(config)
    server = Recorder(path, config.store.uri)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value-1")
        monkeypatch.setenv("KBFLOW_SEARCH__MODE", "fts")
        client = Client(tmp_path / "kb" / "kbflow.toml", config=config)
        assert client.search("restore a snapshot", k=3) == []
        sent = bytes(server.received)
        assert b"restore a snapshot" in sent and b"KBFLOW_SEARCH__MODE" in sent  # positive control
        assert b"very-secret-value-1" not in sent and b"AWS_SECRET_ACCESS_KEY" not in sent
        assert b"PATH" not in sent and os.environ["HOME"].encode() not in sent
        assert environment_digest(config).encode() in sent  # a digest of the variables, not their values
    finally:
        server.shutdown()
        server.server_close()


def test_search_sends_who_asks(tmp_path):
    config = config_at(tmp_path / "kb")
    server = Recorder(checked_socket_path(config), config.store.uri)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        Client(tmp_path / "kb" / "kbflow.toml", config=config).search("vpn", principals=["group:support"])
        assert re.search(rb'"principals":\s*\["group:support"\]', bytes(server.received))
    finally:
        server.shutdown()
        server.server_close()


PEER = """
import os, socket, sys, time
path = sys.argv[1]
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path)
os.chmod(path, 0o777)
os.setgid(65534); os.setuid(65534)  # the peer a second local user would be
listener.listen(1)
print("ready", flush=True)
conn, _ = listener.accept()
conn.settimeout(3)
try:
    data = conn.recv(65536)
except OSError:
    data = b""
sys.stdout.write(repr(data))
"""


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a peer as another uid")
def test_a_peer_of_another_uid_on_the_socket_gets_nothing(tmp_path):
    config = config_at(tmp_path / "kb")
    path = checked_socket_path(config)
    peer = subprocess.Popen([sys.executable, "-c", PEER, str(path)], stdout=subprocess.PIPE, text=True)
    assert peer.stdout.readline() == "ready\n"
    client = Client(tmp_path / "kb" / "kbflow.toml", config=config)
    with pytest.raises(UnsafeService, match="uid 65534"):
        client.hello()
    out, _ = peer.communicate(timeout=30)
    assert out == "b''", out  # the peer received not one byte


def test_no_socket_means_no_service_and_nothing_is_created(tmp_path):
    config = config_at(tmp_path / "kb")
    with pytest.raises(ServiceUnavailable, match="not running"):
        Client(tmp_path / "kb" / "kbflow.toml", config=config).hello()
    assert not Path(config.store.uri).exists()


def test_importing_the_client_and_kbflow_loads_nothing_heavy_and_leaves_the_environment_alone():
    code = ("import os, sys; before = dict(os.environ); import kbflow.client; "
            "heavy = [m for m in ('prefect', 'torch', 'lancedb', 'great_expectations', 'fastapi') if m in sys.modules]; "
            "print(heavy, before == dict(os.environ))")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "DO_NOT_TRACK", "TQDM_DISABLE")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.stdout.strip() == "[] True", done.stderr
