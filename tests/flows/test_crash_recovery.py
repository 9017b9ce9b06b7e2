"""A run killed mid-way leaves the previous index intact; the next run converges."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lancedb
import numpy as np
import pytest

from conftest import DOCS_SOURCE, SMALL_CORPUS, write, write_config
from flows.ingest import ingest
from kbflow.config import load_config

pytestmark = pytest.mark.usefixtures("prefect_harness")
HELPER = Path(__file__).parents[1] / "crash_helper.py"


def snapshot(config_path) -> dict:
    """Everything a reader can see: chunks with vectors, and the manifest."""
    db = lancedb.connect(load_config(config_path).store.uri)
    chunks = {row["chunk_id"]: row for row in db.open_table("chunks").to_arrow().to_pylist()}
    documents = {row["doc_id"]: (row["uri"], row["content_hash"], row["status"], row["n_chunks"])
                 for row in db.open_table("documents").to_arrow().to_pylist()}
    return {"chunks": chunks, "documents": documents}


def assert_same_index(actual: dict, expected: dict) -> None:
    assert actual["documents"] == expected["documents"]
    assert set(actual["chunks"]) == set(expected["chunks"])
    for chunk_id, row in expected["chunks"].items():
        assert actual["chunks"][chunk_id]["text"] == row["text"]
        np.testing.assert_allclose(actual["chunks"][chunk_id]["vector"], row["vector"], atol=1e-6)


def edit_corpus(root: Path) -> None:
    docs = root / "docs"
    (docs / "billing.txt").unlink()
    path = docs / "install.md"
    path.write_text(path.read_text().replace("8420", "8500"))
    write(root, {"docs/new-a.md": "# Sync\n\nClients sync every ten seconds.",
                 "docs/new-b.txt": "Support is open on weekdays from nine to five."})


def start_helper(config_path, marker, crash_point) -> subprocess.Popen:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(Path.cwd())}
    return subprocess.Popen([sys.executable, str(HELPER), str(config_path), str(marker), crash_point],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


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
