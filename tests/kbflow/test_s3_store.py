"""A store on object storage: ingest, search, incremental re-run, rollback, maintenance and the CLI
against a local S3-compatible server (moto's server mode, started on loopback for the session)."""

from __future__ import annotations

import json
import uuid

import boto3
import numpy as np
import pytest
from typer.testing import CliRunner

from kbflow.cli import app
from kbflow.config import load_config
from kbflow.flows.ingest import ingest
from kbflow.flows.rollback import rollback
from kbflow.lock import lock_path
from kbflow.search import search
from kbflow.store import Store

from conftest import DOCS_SOURCE, SMALL_CORPUS, edit_corpus, one_chunk_per_section, write
from fakes import HashEmbedder

pytestmark = pytest.mark.usefixtures("prefect_harness")
BUCKET = "kbflow-test"
CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test", "aws_region": "us-east-1"}


def s3_config(root, endpoint: str | None, extra: str = "") -> tuple:
    """A config whose store is a fresh prefix of the bucket; storage options in the file unless endpoint is None."""
    write(root, SMALL_CORPUS)
    uri = f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}/kb"
    options = "" if endpoint is None else (
        "[store.storage_options]\n" + "".join(f'{k} = "{v}"\n' for k, v in CREDENTIALS.items())
        + f'aws_endpoint = "{endpoint}"\nallow_http = "true"\n')
    path = root / "kbflow.toml"
    path.write_text(f'[store]\nuri = "{uri}"\n{extra}\n{options}\n{one_chunk_per_section("")}\n{DOCS_SOURCE}',
                    encoding="utf-8")
    return path, uri


def snapshot(config_path) -> dict:
    """What a reader sees (chunks with vectors, manifest), read through the store's own options."""
    store = Store(load_config(config_path).store)
    chunks = {row["chunk_id"]: (row["text"], row["vector"]) for row in store.table("chunks").to_arrow().to_pylist()}
    documents = {row["doc_id"]: (row["uri"], row["content_hash"], row["status"])
                 for row in store.table("documents").to_arrow().to_pylist()}
    return {"chunks": chunks, "documents": documents}


def assert_same(actual: dict, expected: dict) -> None:
    assert actual["documents"] == expected["documents"]
    assert set(actual["chunks"]) == set(expected["chunks"])
    for chunk_id, (text, vector) in expected["chunks"].items():
        assert actual["chunks"][chunk_id][0] == text
        np.testing.assert_allclose(actual["chunks"][chunk_id][1], vector, atol=1e-6)


def test_ingest_search_incremental_and_rollback_on_s3(tmp_path, s3_endpoint, hash_embedder):
    config_path, uri = s3_config(tmp_path, s3_endpoint)
    config = load_config(config_path)
    assert config.store.uri == uri and not config.store.is_local
    assert config.quality.results_dir == tmp_path / ".kbflow-quality"  # local, beside the config

    first = ingest(config_path=str(config_path))
    assert first["status"] == "published" and first["documents"]["new"] == 3
    state_a = snapshot(config_path)
    objects = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                           region_name="us-east-1").list_objects_v2(Bucket=BUCKET, Prefix=uri[len(f"s3://{BUCKET}/"):])
    assert any("/chunks.lance/" in item["Key"] for item in objects["Contents"])  # really in the bucket
    assert not (tmp_path / ".kbflow").exists()  # nothing written as a local store by mistake
    assert lock_path(config).parent == tmp_path  # the writer lock: a local file beside the config

    hits = search(config, ["which port does the server listen on"], k=2)[0]
    assert hits[0]["uri"] == "install.md"
    assert search(config, ["nightly backups"], k=1, mode="fts")[0][0]["uri"] == "backup.md"
    assert search(config, ["nightly backups"], k=1, mode="hybrid")[0][0]["uri"] == "backup.md"

    assert ingest(config_path=str(config_path))["status"] == "no_change"
    path = tmp_path / "docs/install.md"
    path.write_text(path.read_text().replace("port 8420", "port 9000"))
    hash_embedder.encoded.clear()
    second = ingest(config_path=str(config_path))
    assert (second["documents"]["changed"], second["documents"]["unchanged"]) == (1, 2)
    assert second["chunks"]["embedded"] == 1 and len(hash_embedder.encoded) == 1 and "9000" in hash_embedder.encoded[0]
    assert search(config, ["port 9000"], k=1, mode="fts")[0][0]["text"].count("9000") == 1

    report = rollback(config_path=str(config_path))
    assert report["restored_run_id"] == first["run_id"]
    assert_same(snapshot(config_path), state_a)
    assert "8420" in search(config, ["port"], k=1, mode="fts")[0][0]["text"]


def test_cli_status_search_trace_and_reindex_on_s3_with_options_from_the_environment(
    tmp_path, s3_endpoint, hash_embedder, monkeypatch
):
    for name, value in {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                        "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}.items():
        monkeypatch.setenv(name, value)
    config_path, _ = s3_config(tmp_path, None)
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", "--config", str(config_path), "--json"])
    assert result.exit_code == 0, result.output
    ingested = json.loads(result.stdout)

    result = runner.invoke(app, ["status", "--config", str(config_path), "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert (status["documents"], status["chunks"]) == (3, ingested["chunks"]["total"])
    result = runner.invoke(app, ["search", "nightly backups", "--config", str(config_path), "--mode", "fts", "--json"])
    assert result.exit_code == 0, result.output
    hit = json.loads(result.stdout)[0]
    assert hit["uri"] == "backup.md"
    result = runner.invoke(app, ["trace", hit["chunk_id"], "--config", str(config_path), "--json"])
    assert result.exit_code == 0, result.output
    lineage = json.loads(result.stdout)
    assert lineage["run"]["run_id"] == ingested["run_id"] and lineage["table_version"] is not None

    hash_embedder.registry["model-b"] = HashEmbedder(name="model-b", dim=16)  # reindex stages locally, then switches
    monkeypatch.setenv("KBFLOW_EMBEDDING__MODEL", "model-b")
    result = runner.invoke(app, ["reindex", "--config", str(config_path), "--json"])
    assert result.exit_code == 0, result.output
    assert Store(load_config(config_path).store).index_model() == "model-b"
    assert not any(tmp_path.glob(".kbflow-staging-*"))  # the staging store was removed


def test_maintenance_on_s3_keeps_the_last_runs_restorable(tmp_path, s3_endpoint, hash_embedder):
    # Retention 0 days: only keep_runs protects versions from optimize's cleanup (run after every publish).
    config_path, _ = s3_config(tmp_path, s3_endpoint, "optimize_retention_days = 0\nkeep_runs = 2")
    first = ingest(config_path=str(config_path))
    edit_corpus(tmp_path)
    second = ingest(config_path=str(config_path))
    state_b = snapshot(config_path)
    (tmp_path / "docs/new-a.md").write_text("# Sync\n\nClients sync every minute.")
    third = ingest(config_path=str(config_path))

    chunks = Store(load_config(config_path).store).table("chunks")
    assert set(chunks.tags.list()) == {second["run_id"], third["run_id"]}  # the first run's tag was released
    assert {tag["version"] for tag in chunks.tags.list().values()} <= {v["version"] for v in chunks.list_versions()}

    rollback(config_path=str(config_path), to_run=second["run_id"])
    assert_same(snapshot(config_path), state_b)
    with pytest.raises(LookupError, match="tagged"):
        rollback(config_path=str(config_path), to_run=first["run_id"])
