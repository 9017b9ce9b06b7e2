"""Ingest from an S3 bucket (moto on loopback, behind a counting proxy) through real Prefect flow runs:
changes detected exactly, no body read when nothing changed, bad objects quarantined, a source that
cannot be listed fails the run and leaves the index as it was, with no credential in any record; and the
change cycle on GCS (gcp-storage-emulator on loopback, counting body reads at the emulator)."""

from __future__ import annotations

import json
import uuid

import pytest
from typer.testing import CliRunner

from kbflow.cli import app
from kbflow.config import load_config
from kbflow.errors import SourceUnreachable
from kbflow.flows.ingest import ingest
from kbflow.lineage import trace_chunk
from kbflow.store import Store

from conftest import SMALL_CORPUS, snapshot, write_config
from s3_servers import s3_client, start_authenticating_moto

pytestmark = pytest.mark.usefixtures("prefect_harness")
BUCKET = "kbflow-test"
SECRET = "wrong-secret-5e1c9a"


def upload(endpoint: str, prefix: str, files: dict[str, str | bytes]) -> None:
    client = s3_client(endpoint)
    for key, body in files.items():
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/{key}", Body=body.encode() if isinstance(body, str) else body)


def bucket_config(root, endpoint: str, prefix: str, extra: str = "", secret: str = "test") -> str:
    source = (f'[[sources]]\nname = "kb"\nkind = "files"\npath = "s3://{BUCKET}/{prefix}"\ntenant = "public"\n'
              f'[sources.storage_options]\nendpoint_url = "{endpoint}"\naws_access_key_id = "test"\n'
              f'aws_secret_access_key = "{secret}"\nregion = "us-east-1"\n')
    return str(write_config(root, source, extra))


def corpus() -> dict[str, str]:
    return {key.removeprefix("docs/"): text.replace("\n        ", "\n").strip() + "\n" for key, text in SMALL_CORPUS.items()}


def test_new_changed_unchanged_deleted_from_a_bucket_and_no_body_read_without_a_change(
    tmp_path, s3_proxy, hash_embedder
):
    prefix = f"kb-{uuid.uuid4().hex[:8]}"
    upload(s3_proxy.endpoint, prefix, corpus())
    config_path = bucket_config(tmp_path, s3_proxy.endpoint, prefix)

    first = ingest(config_path=config_path)
    assert first["status"] == "published" and first["documents"]["new"] == 3
    store = Store(load_config(config_path).store)
    documents = {row["uri"]: row for row in store.documents().to_pylist()}
    assert set(documents) == {"install.md", "backup.md", "billing.txt"}
    assert all(row["change_token"].startswith("etag:") for row in documents.values())
    chunk_id = next(row["chunk_id"] for row in store.chunks(["chunk_id", "uri"]).to_pylist() if row["uri"] == "install.md")
    assert trace_chunk(load_config(config_path), chunk_id)["document"]["path"] == f"s3://{BUCKET}/{prefix}/install.md"

    s3_proxy.clear()
    again = ingest(config_path=config_path)
    assert again["status"] == "no_change" and again["documents"]["unchanged"] == 3
    assert s3_proxy.body_reads(BUCKET) == {}  # listed, never read

    client = s3_client(s3_proxy.endpoint)
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/install.md",
                      Body=corpus()["install.md"].replace("port 8420", "port 9000").encode())
    client.delete_object(Bucket=BUCKET, Key=f"{prefix}/billing.txt")
    upload(s3_proxy.endpoint, prefix, {"sync.md": "# Sync\n\nClients sync every ten seconds over HTTPS.\n"})
    s3_proxy.clear()
    hash_embedder.encoded.clear()
    changed = ingest(config_path=config_path)
    assert changed["status"] == "published"
    assert {k: changed["documents"][k] for k in ("new", "changed", "unchanged", "deleted")} == {
        "new": 1, "changed": 1, "unchanged": 1, "deleted": 1}
    # each changed or new object: read to hash it (discover), to find its source's boilerplate lines and
    # to parse it (the last two parse it, as for local files); the unchanged backup.md not at all
    assert s3_proxy.body_reads(BUCKET) == {f"{prefix}/install.md": 3, f"{prefix}/sync.md": 3}
    assert any("9000" in text for text in hash_embedder.encoded)
    now = {row["uri"] for row in store.documents().to_pylist()}
    assert now == {"install.md", "backup.md", "sync.md"}

    # backup.md re-uploaded with the same bytes as a multipart upload: a new ETag, the same content.
    key = f"{prefix}/backup.md"
    upload_id = client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    part = client.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=1,
                              Body=corpus()["backup.md"].encode())
    client.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id,
                                     MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]})
    s3_proxy.clear()
    moved = ingest(config_path=config_path)
    assert moved["status"] == "no_change" and s3_proxy.body_reads(BUCKET) == {key: 1}  # hashed, not parsed
    token = next(row["change_token"] for row in store.documents().to_pylist() if row["uri"] == "backup.md")
    assert token.endswith("-1\"") or token.endswith("-1")  # the multipart ETag is stored
    s3_proxy.clear()
    assert ingest(config_path=config_path)["status"] == "no_change" and s3_proxy.body_reads(BUCKET) == {}


def test_a_gs_bucket_source_ingests_changes_exactly_and_reads_no_body_without_a_change(
    tmp_path, gcs_emulator, hash_embedder
):
    """The same cycle on GCS (gcp-storage-emulator, tests/gcs_server.py), counted at the emulator."""
    from gcs_server import GCS_BUCKET

    root = f"gs://{GCS_BUCKET}/kb-{uuid.uuid4().hex[:8]}"
    gcs_emulator.put(root, corpus())
    config_path = str(write_config(tmp_path, (
        f'[[sources]]\nname = "kb"\nkind = "files"\npath = "{root}"\ntenant = "public"\n'
        f'[sources.storage_options]\nendpoint_url = "{gcs_emulator.endpoint}"\ntoken = "anon"\n')))
    assert ingest(config_path=config_path)["documents"]["new"] == 3

    gcs_emulator.log.lines.clear()
    again = ingest(config_path=config_path)
    assert again["status"] == "no_change" and again["documents"]["unchanged"] == 3
    assert gcs_emulator.log.lines and gcs_emulator.log.media_reads() == {}  # listed, never read

    gcs_emulator.put(root, {"install.md": corpus()["install.md"].replace("port 8420", "port 9000"),
                            "sync.md": "# Sync\n\nClients sync every ten seconds over HTTPS.\n"})
    gcs_emulator.fs.rm_file(f"{root}/billing.txt")
    gcs_emulator.log.lines.clear()
    changed = ingest(config_path=config_path)
    assert {k: changed["documents"][k] for k in ("new", "changed", "unchanged", "deleted")} == {
        "new": 1, "changed": 1, "unchanged": 1, "deleted": 1}
    prefix = root.split("/", 3)[3]
    assert gcs_emulator.log.media_reads() == {f"{prefix}/install.md": 3, f"{prefix}/sync.md": 3}  # hash, boilerplate, parse
    store = Store(load_config(config_path).store)
    assert {row["uri"] for row in store.documents().to_pylist()} == {"install.md", "backup.md", "sync.md"}
    assert all(row["change_token"].startswith("version:") for row in store.documents().to_pylist())


def corrupt_pdf() -> bytes:
    return b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nthis is not a pdf at all\n%%EOF"


def test_bad_objects_are_quarantined_with_reasons_while_the_rest_publishes(tmp_path, s3_proxy, hash_embedder):
    prefix = f"kb-{uuid.uuid4().hex[:8]}"
    upload(s3_proxy.endpoint, prefix, {
        **corpus(),
        "binary.md": b"# Title\n\x00\x01\x02\xff\xfe\x00 not text \x00" * 20,
        "broken.pdf": corrupt_pdf(),
        "huge.md": "# Huge\n\n" + "many words here " * 400,
    })
    config_path = bucket_config(tmp_path, s3_proxy.endpoint, prefix,
                                "[quality]\nmax_file_bytes = 4000\nmax_quarantined_share = 0.6\n")
    report = ingest(config_path=config_path)
    assert report["status"] == "published"
    # Set aside by discovery (huge.md) or by parse (the other two): quarantined, not new, alike.
    assert (report["documents"]["new"], report["documents"]["quarantined"]) == (3, 3)
    store = Store(load_config(config_path).store)
    active = {row["uri"] for row in store.documents().to_pylist() if row["status"] == "active"}
    assert active == {"install.md", "backup.md", "billing.txt"}
    reasons = {row["uri"]: (row["stage"], row["reason"]) for row in store.table("quarantine").to_arrow().to_pylist()}
    assert reasons["binary.md"] == ("parse", "binary_content")
    assert reasons["broken.pdf"] == ("parse", "corrupt_file")
    assert reasons["huge.md"] == ("discover", "file_too_large")
    assert s3_proxy.body_reads(BUCKET)[f"{prefix}/huge.md"] == 0  # too large: judged from the listing


def test_a_source_that_cannot_be_listed_fails_the_run_and_leaves_the_index_as_it_was(
    tmp_path, s3_endpoint, hash_embedder
):
    prefix = f"kb-{uuid.uuid4().hex[:8]}"
    upload(s3_endpoint, prefix, corpus())
    config_path = bucket_config(tmp_path, s3_endpoint, prefix)
    assert ingest(config_path=config_path)["status"] == "published"
    before = snapshot(config_path)
    store = Store(load_config(config_path).store)
    runs_before = len(store.runs())

    # Wrong credentials: a moto that checks them, as S3 does.
    process, checking = start_authenticating_moto()
    try:
        for endpoint in (checking, "http://127.0.0.1:9"):  # then a port where nothing listens
            bucket_config(tmp_path, endpoint, prefix, secret=SECRET)
            with pytest.raises(SourceUnreachable) as failed:
                ingest(config_path=config_path)
            message = str(failed.value)
            assert "source 'kb'" in message and endpoint in message and SECRET not in message
        # the CLI: `error: …` naming the source, exit 1, no traceback and no secret
        result = CliRunner().invoke(app, ["ingest", "--config", config_path, "--json"])
        assert result.exit_code == 1 and "error: source 'kb': cannot list" in result.output
        assert SECRET not in result.output and "Traceback" not in result.output
    finally:
        process.terminate()
        process.wait(10)
    assert snapshot(config_path) == before
    runs = store.runs()
    assert len(runs) == runs_before + 3 and {run["status"] for run in runs[:3]} == {"failed"}
    assert "Access Key Id" in " ".join(run["error"] for run in runs[:3])
    assert SECRET not in json.dumps(runs, default=str)
    assert not store.has("quarantine") or SECRET not in json.dumps(store.quarantine(), default=str)


@pytest.mark.model
def test_a_bucket_source_is_read_by_dask_worker_processes_without_the_local_files(tmp_path, s3_proxy):
    """Local copies are written, uploaded, then deleted: only the bucket holds the documents."""
    pytest.importorskip("prefect_dask")
    prefix = f"kb-{uuid.uuid4().hex[:8]}"
    local = tmp_path / "copy"
    local.mkdir()
    for name, text in corpus().items():
        (local / name).write_text(text)
        s3_client(s3_proxy.endpoint).upload_file(str(local / name), BUCKET, f"{prefix}/{name}")
    for path in local.iterdir():
        path.unlink()
    local.rmdir()
    config_path = bucket_config(tmp_path, s3_proxy.endpoint, prefix,
                                "[ingest]\nbatch_documents = 1\n\n[runner]\nworkers = 2\nprocesses = true\n")
    s3_proxy.clear()
    report = ingest(config_path=config_path, runner="dask")
    assert report["status"] == "published" and report["documents"]["new"] == 3
    # each object: hashed and parsed for boilerplate in the flow, parsed by a worker (that opened the URL itself)
    assert sorted(s3_proxy.body_reads(BUCKET).values()) == [3, 3, 3]
    texts = [row["text"] for row in Store(load_config(config_path).store).table("chunks").to_arrow().to_pylist()]
    assert any("8420" in text for text in texts) and any("Nightly backups" in text for text in texts)
