"""A run killed mid-way leaves the previous index intact; the next run converges."""

from __future__ import annotations

import shutil
import signal
import time

import pytest

from kbflow.flows.ingest import ingest

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


@pytest.mark.parametrize("crash_point", ["during-embedding", "after-chunks-commit"])
def test_killed_run_keeps_the_old_index_and_a_rerun_converges(tmp_path, hash_embedder, crash_point):
    corpus = tmp_path / "corpus"
    write(corpus, SMALL_CORPUS)
    config_path = write_config(corpus, DOCS_SOURCE)
    ingest(config_path=str(config_path))
    before = snapshot(config_path)
    edit_corpus(corpus)

    marker = tmp_path / "marker"
    helper = start_helper(config_path, marker, crash_point)
    deadline = time.monotonic() + 240
    while not marker.exists() and helper.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), helper.stderr.read().decode()[-3000:]
    if helper.poll() is None:
        helper.send_signal(signal.SIGKILL)
    helper.wait(timeout=60)
    assert helper.returncode != 0

    if crash_point == "during-embedding":
        assert_same_index(snapshot(config_path), before)  # nothing of the dead run is visible
    report = ingest(config_path=str(config_path))
    assert report["status"] == "published"

    clean = tmp_path / "clean"
    shutil.copytree(corpus / "docs", clean / "docs")
    clean_config = write_config(clean, DOCS_SOURCE)
    ingest(config_path=str(clean_config))
    assert_same_index(snapshot(config_path), snapshot(clean_config))
    assert ingest(config_path=str(config_path))["status"] == "no_change"


def test_a_run_killed_right_after_its_publish_is_in_runs_and_traceable(tmp_path, hash_embedder):
    """Issue 26 #4: every published table version has its run record, whatever dies when."""
    from kbflow.config import load_config
    from kbflow.lineage import trace_chunk
    from kbflow.store import CHUNKS, Store

    corpus = tmp_path / "corpus"
    write(corpus, SMALL_CORPUS)
    config_path = write_config(corpus, DOCS_SOURCE)
    ingest(config_path=str(config_path))
    edit_corpus(corpus)
    marker = tmp_path / "marker"
    helper = start_helper(config_path, marker, "after-chunks-commit")  # os._exit right after the chunks commit
    helper.wait(timeout=300)
    assert marker.read_text() == "chunks committed", helper.stderr.read().decode()[-3000:]

    config = load_config(config_path)
    store = Store(config.store)
    chunk_runs = set(store.chunks(["run_id"]).column("run_id").to_pylist())
    recorded = {run["run_id"]: run["status"] for run in store.runs()}
    assert len(recorded) == 2 and len(chunk_runs) == 2  # positive control: the dead run's chunks are there
    assert chunk_runs <= set(recorded), (chunk_runs, recorded)
    dead = (chunk_runs - {r for r, s in recorded.items() if s == "published"}).pop()
    assert recorded[dead] == "running"
    chunk_id = store.chunks(["chunk_id", "run_id"]).to_pylist()
    traced = trace_chunk(config, next(c["chunk_id"] for c in chunk_id if c["run_id"] == dead))
    assert traced["run"]["run_id"] == dead and traced["run"]["status"] == "running"
