"""A `gs://` source against a real GCS JSON API (gcp-storage-emulator, in-process on loopback):
changes detected exactly from the listing's generation, no object body read when nothing changed.

gcsfs >= 2026.10 first asks GCS's gRPC storage-control API for the bucket's layout; the emulator
does not speak it, and each ask waits 60 s before falling back. GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT
=false (set in tests/conftest.py before gcsfs loads) keeps the plain JSON-API filesystem.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter

import pyarrow as pa
import pytest

from kbflow.config import SourceConfig
from kbflow.schemas import DOCUMENTS
from kbflow.tasks.discover import diff_against_documents
from kbflow.tasks.object_source import discover_objects, list_objects, read_object

gcp_emulator = pytest.importorskip("gcp_storage_emulator.server")
pytest.importorskip("gcsfs")

BUCKET = "kbflow-gcs"


class RequestLog(logging.Handler):
    """The emulator logs one line per request (`"GET /path?query HTTP/1.1" 200 -`): kept here."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def media_reads(self) -> Counter:
        """GETs of object bodies (`alt=media`, gcsfs's download URL), by object name; listings are not."""
        reads = Counter()
        for line in self.lines:
            method, _, path = line.strip('"').partition(" ")
            path = path.split(" ", 1)[0]
            if method == "GET" and "alt=media" in path:
                reads[path.split(f"/b/{BUCKET}/o/", 1)[1].split("?", 1)[0].replace("%2F", "/")] += 1
        return reads


@pytest.fixture(scope="module")
def gcs_emulator():
    """The emulator on 127.0.0.1 (a free port), in memory, with one bucket: (endpoint URL, request log)."""
    server = gcp_emulator.create_server("127.0.0.1", 0, in_memory=True, default_bucket=BUCKET)
    server.start()
    log = RequestLog()
    logger = logging.getLogger("gcp_storage_emulator.server")
    logger.addHandler(log)
    logger.setLevel(logging.INFO)
    yield f"http://127.0.0.1:{server._api._httpd.server_address[1]}", log
    logger.removeHandler(log)
    server.stop()


def gcs_source(endpoint: str, prefix: str) -> SourceConfig:
    return SourceConfig(name="gcs", kind="files", path=f"gs://{BUCKET}/{prefix}",
                        storage_options={"endpoint_url": endpoint, "token": "anon", "project": "test"})


def put(source: SourceConfig, files: dict[str, str]) -> None:
    import fsspec

    fs = fsspec.filesystem("gs", endpoint_url=source.storage_options["endpoint_url"], token="anon")
    for key, body in files.items():
        fs.pipe_file(f"{source.root}/{key}", body.encode())


def test_a_gs_source_detects_new_changed_unchanged_deleted_and_reads_no_body_without_a_change(gcs_emulator):
    endpoint, log = gcs_emulator
    source = gcs_source(endpoint, f"kb-{uuid.uuid4().hex[:8]}")
    put(source, {"a.md": "# A\n\nalpha", "b.md": "# B\n\nbeta", "c.md": "# C\n\ngamma", "sub/d.txt": "delta"})

    listed = list_objects(source)
    assert [o.uri for o in listed] == ["a.md", "b.md", "c.md", "sub/d.txt"]
    assert all(o.token.startswith("version:") for o in listed)  # GCS listings give each object's generation
    assert read_object(source, listed[0].url) == b"# A\n\nalpha"

    log.lines.clear()
    first = discover_objects(source, 1_000_000, {})
    assert sorted(log.media_reads().values()) == [1, 1, 1, 1]  # new: each read once, to hash it
    stored = {row["doc_id"]: (row["change_token"], row["content_hash"]) for row in first.items.to_pylist()}

    log.lines.clear()
    again = discover_objects(source, 1_000_000, stored)
    assert log.lines and log.media_reads() == {}  # listed, never read
    assert again.items.column("content_hash").to_pylist() == first.items.column("content_hash").to_pylist()

    import fsspec

    fs = fsspec.filesystem("gs", endpoint_url=endpoint, token="anon")
    prefix = source.root.removeprefix("gs://")
    put(source, {"b.md": "# B\n\nbeta, edited", "c.md": "# C\n\ngamma", "e.md": "# E\n\nepsilon"})  # c: same bytes
    fs.rm_file(f"{prefix}/a.md")
    log.lines.clear()
    later = discover_objects(source, 1_000_000, stored)
    # b, c (a new generation) and e are read to hash them; sub/d.txt (same generation) is not
    assert sorted(log.media_reads()) == [f"{prefix.split('/', 1)[1]}/{key}" for key in ("b.md", "c.md", "e.md")]

    documents = pa.Table.from_pylist([{**row, "status": "active"} for row in first.items.to_pylist()], schema=DOCUMENTS)
    changes = diff_against_documents(later, documents)
    assert changes.counts == {"new": 1, "changed": 1, "unchanged": 2, "deleted": 1}
    c_doc = next(r for r in later.items.to_pylist() if r["uri"] == "c.md")
    assert changes.moved_tokens == {c_doc["doc_id"]: c_doc["change_token"]}  # same bytes: only the token moves
