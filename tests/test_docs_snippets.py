"""The docs' search snippets answer from a real index: docs/snippets/warm_search.py (an application
searching through the store's kbflow service with kbflow.client, the service guide) and search_api.py
(README, the Python API page, in-process).

A real `kbflow ingest` process starts the store's service (autostart), as a user's first command does;
the snippets run in this process with the real packaged model; the service is stopped at the end and
the test checks that nothing is left listening.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kbflow.client import Client, ServiceUnavailable

from conftest import DOCS_SOURCE, SMALL_CORPUS, write, write_config

pytestmark = pytest.mark.model
SNIPPETS = Path(__file__).parent.parent / "docs" / "snippets"
KBFLOW = str(Path(sys.executable).parent / "kbflow")


def user_env(**extra: str) -> dict[str, str]:
    """A user's environment: no KBFLOW_NO_SERVER (conftest sets it for the test process), no Prefect API."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING") and not k.startswith("KBFLOW_")}
    return {**env, **extra}


def kbflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([KBFLOW, *args], cwd=cwd, env=user_env(), capture_output=True, text=True, timeout=900)


def run_snippet(name: str) -> dict:
    namespace: dict = {}
    exec(compile((SNIPPETS / name).read_text(encoding="utf-8"), name, "exec"), namespace)
    return namespace


def service_requests(root: Path) -> int:
    """Requests the store's service has answered; -1: none runs."""
    try:
        return Client(root / "kbflow.toml").hello()["requests"]
    except ServiceUnavailable:
        return -1


def test_the_docs_search_snippets_answer_from_the_index_through_the_service_and_in_process(tmp_path, monkeypatch):
    write(tmp_path, SMALL_CORPUS)
    write_config(tmp_path, DOCS_SOURCE)
    monkeypatch.chdir(tmp_path)  # the snippets name "kbflow.toml" relative to the application's folder
    first = kbflow("ingest", "--json", cwd=tmp_path)  # starts the store's service in the background
    try:
        assert first.returncode == 0, first.stderr
        assert "started a kbflow service" in first.stderr, first.stderr
        before = service_requests(tmp_path)
        assert before > 0
        warm = run_snippet("warm_search.py")
        hits = warm["search"]("How do I restore a snapshot?", k=2)
        assert hits[0]["uri"] == "backup.md" and "restore" in hits[0]["text"].lower(), hits
        assert service_requests(tmp_path) > before  # the service answered it, not this process
        hits = run_snippet("search_api.py")["hits"]
        assert hits[0]["uri"] == "backup.md", hits
    finally:
        stopped = kbflow("server", "stop", cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert service_requests(tmp_path) == -1  # nothing left running
    # With no service, the snippet's fallback searches in this process and finds the same page.
    hits = warm["search"]("How do I restore a snapshot?", k=2)
    assert hits[0]["uri"] == "backup.md" and "restore" in hits[0]["text"].lower(), hits
