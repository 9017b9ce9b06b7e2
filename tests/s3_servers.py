"""S3 servers for the tests, all on loopback: moto in server mode (the session's), moto with
authentication on (wrong credentials are refused, as by S3), and a proxy in front of moto that
counts the requests kbflow makes and can make some of them fail.

The proxy sees every request whichever process makes it (the flow's, or a Dask worker's), so a
test can count object bodies read (`GET /bucket/key`) on the server side.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import boto3

CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test", "region_name": "us-east-1"}
ACCESS_DENIED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                 b"<Message>Access Denied</Message></Error>")
SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ServiceUnavailable</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")


def s3_client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, **CREDENTIALS)


def start_moto():
    """A moto S3 server on 127.0.0.1 (a free port): (server, endpoint URL)."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per S3 request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_authenticating_moto() -> tuple[subprocess.Popen, str]:
    """moto in its own process with IAM authentication on: unknown access keys get 403
    InvalidAccessKeyId, as from S3. (In-process it would switch auth on for the session's server.)"""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2)
            return process, endpoint
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise
            time.sleep(0.2)


class CountingProxy:
    """An HTTP proxy to an S3 endpoint that records `(method, path, query)` of each request.

    `fail_next[path] = [503, 503]` answers the next two requests for that path with those
    statuses (then forwards again); `deny` holds paths always answered 403 AccessDenied.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.requests: list[tuple[str, str, str]] = []
        self.fail_next: dict[str, list[int]] = defaultdict(list)
        self.deny: set[str] = set()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _forward(self) -> None:
                path, _, query = self.path.partition("?")
                with proxy._lock:
                    proxy.requests.append((self.command, path, query))
                    failure = proxy.fail_next[path].pop(0) if proxy.fail_next.get(path) else None
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if path in proxy.deny or failure:
                    status, payload = (403, ACCESS_DENIED) if path in proxy.deny else (failure, SLOW_DOWN)
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = proxy.upstream.netloc
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                length = response.getheader("Content-Length") if self.command == "HEAD" else len(payload)
                self.send_header("Content-Length", str(length or 0))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                upstream.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def body_reads(self, bucket: str) -> Counter:
        """GETs of object keys in `bucket` (not listings): {key: count}."""
        with self._lock:
            return Counter(path[len(bucket) + 2:] for method, path, query in self.requests
                           if method == "GET" and path.startswith(f"/{bucket}/") and "list-type" not in query)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
