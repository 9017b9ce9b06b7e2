"""Shared fixtures: one Prefect harness per session, small corpora written per test."""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import NoReturn

import httpx
import lancedb
import numpy as np
import pytest

import kbflow  # noqa: F401  - sets the offline / no-analytics defaults before Prefect loads
import kbflow.flows.ingest  # noqa: F401  - imported before hash_embedder patches its loader
import kbflow.search  # noqa: F401
from kbflow.config import EmbeddingConfig, load_config

from fakes import HashEmbedder
from s3_servers import CountingProxy, s3_client, start_moto

HELPER = Path(__file__).parent / "ingest_helper.py"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.fixture
def prefect_server(tmp_path):
    """A real Prefect server (API, UI, event triggers) on a free loopback port."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           # expired concurrency leases (a killed writer's) are revoked within a second or two
           "PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "1"}
    env.pop("PREFECT_API_URL", None)
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, 180, "prefect server start")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API for all flow tests (starting one costs ~20 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server on 127.0.0.1 (a free port) with the bucket `kbflow-test`; its endpoint URL."""
    server, endpoint = start_moto()
    s3_client(endpoint).create_bucket(Bucket="kbflow-test")
    yield endpoint
    server.stop()


def unavailable(reason: str) -> NoReturn:
    """A server a test needs (PostgreSQL, the GCS emulator, Chromium) cannot start: skip here, but FAIL
    under CI=true, so that a CI run never passes without the tests it is there to run."""
    if os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}:
        pytest.fail(f"{reason} (CI is set: a test that needs it must run, not skip)", pytrace=False)
    pytest.skip(reason)


def require_module(name: str):
    """The module, imported; `unavailable` when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        unavailable(f"{name} is not installed: {error}")


@pytest.fixture(scope="session")
def gcs_emulator():
    """A GCS JSON-API emulator on 127.0.0.1 with the bucket `kbflow-gcs` (tests/gcs_server.py)."""
    require_module("gcp_storage_emulator")
    require_module("gcsfs")
    from gcs_server import GcsEmulator

    emulator = GcsEmulator()
    yield emulator
    emulator.stop()


@pytest.fixture
def s3_proxy(s3_endpoint):
    """A proxy in front of the session's moto that counts requests and can fail some (tests/s3_servers.py)."""
    proxy = CountingProxy(s3_endpoint)
    yield proxy
    proxy.close()


@pytest.fixture
def hash_embedder(monkeypatch) -> HashEmbedder:
    """Flows and search embed with fast test embedders, one per configured model name.

    Returns the default model's; `hash_embedder.registry` maps names to embedders,
    so a test can configure another model (a different name and dimension).
    """
    registry: dict[str, HashEmbedder] = {}

    def load(config: EmbeddingConfig) -> HashEmbedder:
        return registry.setdefault(config.model, HashEmbedder(name=config.model))

    # Every module that imported the real loader by name gets the test one.
    import kbflow.models

    real = kbflow.models.load_embedder
    for module in [m for m in list(sys.modules.values()) if getattr(m, "load_embedder", None) is real]:
        monkeypatch.setattr(module, "load_embedder", load)
    default = load(EmbeddingConfig())
    default.registry = registry
    return default


def write(root: Path, files: dict[str, str | bytes]) -> None:
    """Write {relative path: text or bytes} under root."""
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content), encoding="utf-8")


# The test corpora hold a sentence or two per section, and their tests read one chunk per
# section: carrying small sections into the next (chunking.min_section_tokens) is off here and
# tested on its own (tests/tasks/test_chunk.py, tests/flows/test_ingest_content.py).
def one_chunk_per_section(extra: str) -> str:
    """Config text with `[chunking] min_section_tokens = 0` added (into its own [chunking] table if it has one)."""
    if "[chunking]" in extra:
        return extra.replace("[chunking]", "[chunking]\nmin_section_tokens = 0", 1)
    return f"[chunking]\nmin_section_tokens = 0\n{extra}"


def write_config(root: Path, sources: str, extra: str = "") -> Path:
    path = root / "kbflow.toml"
    text = f'[store]\nuri = ".kbflow"\n{one_chunk_per_section(extra)}\n{textwrap.dedent(sources)}'
    path.write_text(text, encoding="utf-8")
    return path


DOCS_SOURCE = """
[[sources]]
name = "docs"
kind = "files"
path = "docs/"
tenant = "public"
"""

# Labeled questions (labels/qa.jsonl) for datasets and eval: never indexed.
QA_SOURCE = """
[[sources]]
name = "qa"
kind = "records"
path = "labels/"
index = false
id_field = "id"
question_field = "question"
answer_field = "answer"
relevant_field = "relevant"
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


# -- whole-index comparisons and ingests in another process ------------------------------------


def snapshot(config_path) -> dict:
    """Everything a reader can see: chunks with vectors, and the documents table."""
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


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL on loopback for the whole session (pgserver's binaries, else the system's),
    with password authentication; removed at the end. Skipped, saying why, when none can start
    (failed under CI=true: see `unavailable`)."""
    from pg_server import start_postgres

    try:
        server = start_postgres()
    except RuntimeError as error:
        unavailable(str(error))
    yield server
    server.stop()
