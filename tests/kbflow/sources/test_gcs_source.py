"""A `gs://` source against a real GCS JSON API (gcp-storage-emulator on loopback, tests/gcs_server.py):
changes detected exactly from the listing's generation, no object body read when nothing changed."""

from __future__ import annotations

import uuid

import pyarrow as pa

from kbflow.config import source_config
from kbflow.sources.base import Source
from kbflow.schemas import DOCUMENTS
from kbflow.tasks.sources.discover import diff_against_documents
from kbflow.sources.objects import discover_objects, list_objects, read_object

from gcs_server import GCS_BUCKET


def gcs_source(endpoint: str) -> Source:
    return source_config(name="gcs", kind="files", path=f"gs://{GCS_BUCKET}/kb-{uuid.uuid4().hex[:8]}",
                        storage_options={"endpoint_url": endpoint, "token": "anon", "project": "test"})


def test_a_gs_source_detects_new_changed_unchanged_deleted_and_reads_no_body_without_a_change(gcs_emulator):
    source = gcs_source(gcs_emulator.endpoint)
    gcs_emulator.put(source.root, {"a.md": "# A\n\nalpha", "b.md": "# B\n\nbeta", "c.md": "# C\n\ngamma",
                                   "sub/d.txt": "delta"})
    log, prefix = gcs_emulator.log, source.root.split("/", 3)[3]

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

    # b edited, c re-uploaded with the same bytes (a new generation), e new, a deleted
    gcs_emulator.put(source.root, {"b.md": "# B\n\nbeta, edited", "c.md": "# C\n\ngamma", "e.md": "# E\n\nepsilon"})
    gcs_emulator.fs.rm_file(f"{source.root}/a.md")
    log.lines.clear()
    later = discover_objects(source, 1_000_000, stored)
    assert sorted(log.media_reads()) == [f"{prefix}/{key}" for key in ("b.md", "c.md", "e.md")]  # not sub/d.txt

    documents = pa.Table.from_pylist([{**row, "status": "active"} for row in first.items.to_pylist()], schema=DOCUMENTS)
    changes = diff_against_documents(later, documents)
    assert changes.counts == {"new": 1, "changed": 1, "unchanged": 2, "deleted": 1}
    c_doc = next(r for r in later.items.to_pylist() if r["uri"] == "c.md")
    assert changes.moved_tokens == {c_doc["doc_id"]: c_doc["change_token"]}  # same bytes: only the token moves


def test_a_gs_source_with_its_own_endpoint_is_read_with_gcsfs_plain_json_api_filesystem():
    """gcsfs's default class asks Google's gRPC storage-control API about each bucket first: an
    emulator never answers, 60 s a bucket. An endpoint of one's own gets the JSON-API class."""
    from gcsfs.core import GCSFileSystem

    from kbflow.sources.objects import open_filesystem

    own = gcs_source("http://127.0.0.1:9")
    assert type(open_filesystem(own)) is GCSFileSystem
    google = source_config(name="google", kind="files", path=f"gs://{GCS_BUCKET}/kb", storage_options={"token": "anon"})
    assert isinstance(open_filesystem(google), GCSFileSystem)  # gcsfs's own choice, whichever class it is
