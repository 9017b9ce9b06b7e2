"""Rollback to an earlier published state, and two writers on one store."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from kbflow.cli import app
from kbflow.config import load_config
from kbflow.flows.ingest import ingest
from kbflow.flows.rollback import rollback
from kbflow.search import search
from kbflow.store import Store

from conftest import (
    DOCS_SOURCE,
    SMALL_CORPUS,
    assert_same_index,
    edit_corpus,
    snapshot,
    start_helper,
    write,
    write_config,
)

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_rollback_restores_what_a_run_published_and_is_a_run_itself(small_corpus, hash_embedder):
    first = ingest(config_path=str(small_corpus))
    state_a = snapshot(small_corpus)
    edit_corpus(small_corpus.parent)
    second = ingest(config_path=str(small_corpus))
    state_b = snapshot(small_corpus)
    assert state_a != state_b

    report = rollback(config_path=str(small_corpus))  # default: the run before the last publish
    assert report["restored_run_id"] == first["run_id"]
    assert_same_index(snapshot(small_corpus), state_a)
    hits = search(load_config(small_corpus), ["invoices refunds"], k=3, mode="fts")[0]
    assert hits and hits[0]["uri"] == "billing.txt"  # deleted in the second run, back now
    recorded = Store(load_config(small_corpus).store).runs()[0]
    assert (recorded["flow"], recorded["status"], recorded["parent_run_id"]) == (
        "rollback", "published", first["run_id"])

    result = CliRunner().invoke(app, ["rollback", "--config", str(small_corpus), "--to", second["run_id"], "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["restored_run_id"] == second["run_id"]
    assert_same_index(snapshot(small_corpus), state_b)
    assert ingest(config_path=str(small_corpus))["status"] == "no_change"

    rollback(config_path=str(small_corpus), to_run=first["run_id"])
    assert ingest(config_path=str(small_corpus))["status"] == "published"  # forward again from the sources
    assert_same_index(snapshot(small_corpus), state_b)


def test_rollback_to_an_unknown_run_is_refused(small_corpus, hash_embedder):
    ingest(config_path=str(small_corpus))
    result = CliRunner().invoke(app, ["rollback", "--config", str(small_corpus), "--to", "no-such-run"])
    assert result.exit_code == 1 and "did not publish" in result.stderr


def test_two_ingests_at_once_take_turns_and_match_a_serial_run(tmp_path, hash_embedder):
    corpus = tmp_path / "corpus"
    write(corpus, SMALL_CORPUS)
    config_path = write_config(corpus, DOCS_SOURCE)
    markers = [tmp_path / "one.json", tmp_path / "two.json"]
    helpers = [start_helper(config_path, marker, "slow-embedding") for marker in markers]
    for helper in helpers:
        helper.wait(timeout=300)
        assert helper.returncode == 0, helper.stderr.read().decode()[-3000:]
    reports = sorted((json.loads(m.read_text()) for m in markers), key=lambda r: r["status"])
    assert [r["status"] for r in reports] == ["no_change", "published"]  # the second waited, then had nothing to do

    runs = Store(load_config(config_path).store).runs()
    (later, earlier) = runs
    assert earlier["started_at"] + timedelta(seconds=earlier["duration_s"]) <= later["started_at"]

    serial = tmp_path / "serial"
    shutil.copytree(corpus / "docs", serial / "docs")
    serial_config = write_config(serial, DOCS_SOURCE)
    ingest(config_path=str(serial_config))  # in-process, with the same test embedder
    assert_same_index(snapshot(config_path), snapshot(serial_config))
