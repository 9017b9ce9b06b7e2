"""Shared fixtures: one Prefect harness per session, small corpora written per test."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import kbflow  # noqa: F401  - sets the offline / no-analytics defaults before Prefect loads
from fakes import HashEmbedder


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API for all flow tests (starting one costs ~20 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def hash_embedder(monkeypatch) -> HashEmbedder:
    """Make flows and search use the fast deterministic test embedder."""
    embedder = HashEmbedder()
    monkeypatch.setattr("flows.ingest.load_embedder", lambda config: embedder)
    monkeypatch.setattr("kbflow.search.load_embedder", lambda config: embedder)
    return embedder


def write(root: Path, files: dict[str, str | bytes]) -> None:
    """Write {relative path: text or bytes} under root."""
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content), encoding="utf-8")


def write_config(root: Path, sources: str, extra: str = "") -> Path:
    path = root / "kbflow.toml"
    path.write_text(f'[store]\nuri = ".kbflow"\n{extra}\n{textwrap.dedent(sources)}', encoding="utf-8")
    return path


DOCS_SOURCE = """
[[sources]]
name = "docs"
kind = "files"
path = "docs/"
tenant = "public"
"""

SMALL_CORPUS = {
    "docs/install.md": """\
        # Installation

        Lumen Notes runs on Linux and macOS. Download the tarball and run the installer.

        ## Ports

        The server listens on port 8420 by default. Change it with the --port flag.

        ## Storage

        Notes are stored under /var/lib/lumen in plain files.
        """,
    "docs/backup.md": """\
        # Backups

        Nightly backups run at 02:00 and keep fourteen snapshots on the backup volume.

        # Restore

        Restore a snapshot with lumen restore --snapshot ID while the server is stopped.
        """,
    "docs/billing.txt": "Invoices are emailed on the first day of each month.\nRefunds take five business days.\n",
}


@pytest.fixture
def small_corpus(tmp_path) -> Path:
    """A three-document `files` source and its config; returns the config path."""
    write(tmp_path, SMALL_CORPUS)
    return write_config(tmp_path, DOCS_SOURCE)
