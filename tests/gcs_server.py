"""A GCS server for the tests: gcp-storage-emulator (pure Python, the GCS JSON API) on loopback,
in memory, with a log of the requests it serves, so a test can count object bodies read
(`GET …?alt=media`, gcsfs's download URL) on the server side.

gcsfs >= 2026.10's default filesystem first asks GCS's gRPC storage-control API for a bucket's
layout; the emulator does not speak it, and each ask waits 60 s. kbflow (open_filesystem) and this
helper use gcsfs's plain JSON-API filesystem for an endpoint of their own, as a user's emulator needs.
"""

from __future__ import annotations

import logging
from collections import Counter

GCS_BUCKET = "kbflow-gcs"


class RequestLog(logging.Handler):
    """The emulator logs one line per request (`"GET /path?query HTTP/1.1" 200 -`): kept here."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def media_reads(self, bucket: str = GCS_BUCKET) -> Counter:
        """GETs of object bodies in `bucket`, by object name ({name: count}); listings are not counted."""
        reads = Counter()
        for line in list(self.lines):
            method, _, path = line.strip('"').partition(" ")
            path = path.split(" ", 1)[0]
            if method == "GET" and "alt=media" in path and f"/b/{bucket}/o/" in path:
                reads[path.split(f"/b/{bucket}/o/", 1)[1].split("?", 1)[0].replace("%2F", "/")] += 1
        return reads


class GcsEmulator:
    """The emulator on 127.0.0.1 (a free port) with the bucket GCS_BUCKET; `endpoint`, `log`, `fs` (gcsfs)."""

    def __init__(self) -> None:
        from gcp_storage_emulator.server import create_server
        from gcsfs.core import GCSFileSystem

        self.server = create_server("127.0.0.1", 0, in_memory=True, default_bucket=GCS_BUCKET)
        self.server.start()
        self.endpoint = f"http://127.0.0.1:{self.server._api._httpd.server_address[1]}"
        self.log = RequestLog()
        self._logger = logging.getLogger("gcp_storage_emulator.server")
        self._logger.addHandler(self.log)
        self._logger.setLevel(logging.INFO)
        self.fs = GCSFileSystem(endpoint_url=self.endpoint, token="anon", skip_instance_cache=True)

    def put(self, root: str, files: dict[str, str | bytes]) -> None:
        """Upload `files` ({key: body}) under `root` (`gs://bucket/prefix`)."""
        for key, body in files.items():
            self.fs.pipe_file(f"{root}/{key}", body.encode() if isinstance(body, str) else body)

    def stop(self) -> None:
        self._logger.removeHandler(self.log)
        self.server.stop()
