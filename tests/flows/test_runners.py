"""Distributed ingest: Dask and Ray workers build the same index as the default runner.

The real packaged model on a tiny corpus (a handful of chunks): worker processes
load it themselves from the config, so a monkeypatched test embedder could not
reach them. One document per batch, so the workers really share the batches.
"""

from __future__ import annotations

import lancedb
import numpy as np
import pytest

from kbflow.config import load_config
from kbflow.flows.ingest import ingest

from conftest import write, write_config

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.model]

CORPUS = {
    "docs/install.md": "# Install\n\nDownload the tarball and run the installer.\n\n## Ports\n\nThe server listens on 8420.\n",
    "docs/backup.md": "# Backups\n\nNightly backups keep fourteen snapshots.\n\n# Restore\n\nStop the server, then restore.\n",
    "docs/billing.txt": "Invoices are emailed on the first day of each month. Refunds take five business days.\n",
    "docs/sync.md": "# Sync\n\nClients sync every ten seconds over HTTPS.\n",
}
BATCHES = "[ingest]\nbatch_documents = 1\n\n[runner]\nworkers = 2\n"


def corpus(root) -> str:
    write(root, CORPUS)
    source = '[[sources]]\nname = "docs"\nkind = "files"\npath = "docs/"\ntenant = "public"\n'
    return str(write_config(root, source, BATCHES))


def vectors(config_path: str) -> dict[str, tuple[str, np.ndarray]]:
    rows = lancedb.connect(load_config(config_path).store.uri).open_table("chunks").to_arrow().to_pylist()
    return {row["chunk_id"]: (row["text"], np.asarray(row["vector"])) for row in rows}


@pytest.fixture(scope="module")
def default_index(tmp_path_factory) -> dict:
    config_path = corpus(tmp_path_factory.mktemp("default"))
    report = ingest(config_path=config_path)
    assert report["status"] == "published" and report["chunks"]["total"] >= 6
    return vectors(config_path)


def assert_same_chunks(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected)
    for chunk_id, (text, vector) in expected.items():
        assert actual[chunk_id][0] == text
        np.testing.assert_allclose(actual[chunk_id][1], vector, atol=1e-5)


def test_dask_workers_build_the_same_index_as_the_default_runner(tmp_path, default_index):
    # A 2-worker LocalCluster of processes: each worker loads the model from the config.
    config_path = corpus(tmp_path)
    report = ingest(config_path=config_path, runner="dask")
    assert report["status"] == "published"
    assert report["documents"]["new"] == len(CORPUS)
    assert report["chunks"]["embedded"] + report["chunks"]["reused"] == len(default_index)
    assert_same_chunks(vectors(config_path), default_index)


def test_ray_workers_build_the_same_index_as_the_default_runner(tmp_path, default_index):
    # A local Ray instance with 2 CPUs (no dashboard), started and stopped by the run.
    config_path = corpus(tmp_path)
    report = ingest(config_path=config_path, runner="ray")
    assert report["status"] == "published"
    assert_same_chunks(vectors(config_path), default_index)
    # A re-run on Ray finds nothing to do: the documents table it published is complete.
    assert ingest(config_path=config_path, runner="ray")["status"] == "no_change"
