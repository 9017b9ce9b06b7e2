"""The kbflow service as a user meets it: real `kbflow` processes, a real service process on its real
socket, the real packaged model, a temporary Prefect server of the service's own.

The first flow command starts the service (and says so once); commands print and exit as they do
in-process; the model is loaded once; a search is answered while an ingest runs; a client killed
mid-ingest, or `kbflow server stop` during one, cancels the run at a batch boundary (recorded as
failed, the index as it was, one line on the client's terminal); a stale socket is replaced.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kbflow.client import Client, ServiceUnavailable, socket_path
from kbflow.config import load_config

from conftest import DOCS_SOURCE, SMALL_CORPUS, wait_for, write, write_config

pytestmark = pytest.mark.model
KBFLOW = str(Path(sys.executable).parent / "kbflow")
# Small batches: a cancel is checked at each batch boundary (and each encode step inside a batch).
# The bulk pages are templated prose: some are set aside as repetitive, which must not block these runs.
CONFIG_EXTRA = "[ingest]\nbatch_documents = 8\n[quality]\nmax_quarantined_share = 0.9\n"


def user_env(**extra: str) -> dict[str, str]:
    """A user's environment: no KBFLOW_NO_SERVER (conftest's), no Prefect API configured."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING") and not k.startswith("KBFLOW_")}
    return {**env, "COLUMNS": "120", **extra}


def kbflow(*args: str, cwd: Path, in_process: bool = False, timeout: float = 900) -> subprocess.CompletedProcess:
    env = user_env(KBFLOW_NO_SERVER="1") if in_process else user_env()
    return subprocess.run([KBFLOW, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def start(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([KBFLOW, *args], cwd=cwd, env=user_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def client(root: Path) -> Client:
    return Client(root / "kbflow.toml")


def running_commands(root: Path) -> int:
    try:
        return client(root).hello()["running"]
    except ServiceUnavailable:
        return -1


WORDS = ("snapshot volume restore backup cluster node replica schedule retention policy archive checksum "
         "bucket region latency quota tenant billing invoice upgrade rollback migration index shard").split()


def bulk(root: Path, version: int, pages: int = 48) -> None:
    """Pages of varied prose (no quality check sets them aside), enough for several batches of embedding."""
    rng = random.Random(version)

    def sentence() -> str:
        a, b, c, d = (rng.choice(WORDS) for _ in range(4))
        return f"The {a} of the {b} is kept with the {c}, and it is checked when the {d} changes."

    write(root, {f"docs/bulk/page-{i}.md": f"# Page {i} v{version}\n\n"
                 + "\n\n".join(" ".join(sentence() for _ in range(6)) for _ in range(8))
                 for i in range(pages)})


def chunk_total(root: Path) -> int:
    return json.loads(kbflow("status", "--json", cwd=root, in_process=True).stdout)["chunks"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A small corpus, ingested by a first command that started the service; stopped at the end."""
    root = tmp_path_factory.mktemp("served")
    write(root, SMALL_CORPUS)
    write_config(root, DOCS_SOURCE, CONFIG_EXTRA)
    first = kbflow("ingest", "--json", cwd=root)
    try:
        assert first.returncode == 0, first.stderr
        yield root, first
    finally:
        kbflow("server", "stop", cwd=root)
    assert running_commands(root) == -1


def test_the_first_command_starts_the_service_and_says_so_once(served):
    root, first = served
    assert first.stderr.count("started a kbflow service") == 1, first.stderr
    assert "kbflow server stop" in first.stderr
    assert json.loads(first.stdout)["documents"]["new"] == len(SMALL_CORPUS)
    again = kbflow("ingest", "--json", cwd=root)
    assert again.returncode == 0 and "started a kbflow service" not in again.stderr, again.stderr
    assert json.loads(again.stdout)["status"] == "no_change"
    assert (Path(load_config(root / "kbflow.toml").store.uri) / "service").stat().st_mode & 0o777 == 0o700
    assert socket_path(load_config(root / "kbflow.toml")).stat().st_mode & 0o777 == 0o600


def test_commands_through_the_service_print_and_exit_as_in_process(served):
    root, _ = served
    before = client(root).hello()["requests"]
    cases = [
        (["search", "restore a snapshot", "--k", "2", "--json"], 0),
        (["search", "restore a snapshot", "--k", "2", "--mode", "vector"], 0),  # a Rich table, 120 columns
        (["search", "restore", "--tenant", "nobody", "--mode", "fts", "--json"], 0),  # a warning on stderr
        (["status", "--json"], 0),
        (["runs", "--json"], 0),
        (["quarantine", "--json"], 0),
        (["search", "--queries", "missing.jsonl"], 1),  # an error read here: message, exit 1
        (["search", "x", "--mode", "bogus"], 2),  # a usage error: exit 2
        (["ingest", "--source", "nope"], 1),  # an error the service reports: one line, exit 1
    ]
    for args, code in cases:
        warm, cold = kbflow(*args, cwd=root), kbflow(*args, cwd=root, in_process=True)
        assert (warm.returncode, cold.returncode) == (code, code), (args, warm.stderr, cold.stderr)
        assert warm.stderr == cold.stderr, args
        assert warm.stdout == cold.stdout, args
    assert client(root).hello()["requests"] > before  # they ran in the service
    assert "restore" in json.loads(kbflow(*cases[0][0], cwd=root).stdout)[0]["text"].lower()


APPLICATION = """
import json, sys
from kbflow.client import Client
searches = [Client(sys.argv[1]).search(query, k=2, mode="vector")
            for query in ("How do I restore a snapshot?", "which port does the server use", "restore a snapshot")]
print(json.dumps(searches))
"""


def test_an_application_searches_the_warm_model_through_the_client(served):
    # The application is its own process with a user's environment, as a real one is: this test
    # process carries the Prefect test harness's API settings, which the service rightly refuses.
    root, _ = served
    application = subprocess.run([sys.executable, "-c", APPLICATION, str(root / "kbflow.toml")], cwd=root,
                                 env=user_env(), capture_output=True, text=True, timeout=300)
    assert application.returncode == 0, application.stderr
    hits, *others = json.loads(application.stdout)
    assert hits[0]["uri"] == "backup.md" and "restore" in hits[0]["text"].lower(), hits
    assert all(others)
    assert client(root).hello()["model_loads"] == 1  # three searches, one model load: the service's


def test_a_search_is_answered_while_an_ingest_runs_and_a_killed_client_cancels_the_ingest(served):
    root, _ = served
    chunks_before = chunk_total(root)
    bulk(root, version=1)
    ingest = start("ingest", "--json", cwd=root)
    try:
        wait_for(lambda: running_commands(root) >= 1, 300, "the ingest to run in the service")
        searched = kbflow("search", "restore a snapshot", "--mode", "vector", "--k", "1", "--json", cwd=root)
        assert searched.returncode == 0, searched.stderr
        assert ingest.poll() is None, "the ingest ended before the search was answered: nothing was shown"
        assert json.loads(searched.stdout)[0]["uri"] == "backup.md"
        ingest.send_signal(signal.SIGKILL)  # the client dies: the service cancels the run
        ingest.wait(60)
        wait_for(lambda: running_commands(root) == 0, 300, "the cancelled ingest to end")
    finally:
        if ingest.poll() is None:
            ingest.kill()
    last = json.loads(kbflow("runs", "--json", "--limit", "1", cwd=root).stdout)[0]
    assert last["status"] == "failed" and "client went away" in last["error"], last
    assert chunk_total(root) == chunks_before  # nothing of the cancelled run was published
    done = kbflow("ingest", "--json", cwd=root)  # the service serves the next command; the run converges
    assert done.returncode == 0 and json.loads(done.stdout)["status"] == "published", done.stderr


def test_server_stop_during_an_ingest_ends_it_with_one_line_and_a_recorded_run(served):
    root, _ = served
    bulk(root, version=2)
    ingest = start("ingest", "--json", cwd=root)
    try:
        wait_for(lambda: running_commands(root) >= 1, 300, "the ingest to run in the service")
        stopped = kbflow("server", "stop", cwd=root)
        assert stopped.returncode == 0 and "stopped the kbflow service" in stopped.stdout, stopped.stderr
        out, err = ingest.communicate(timeout=300)
    finally:
        if ingest.poll() is None:
            ingest.kill()
    assert ingest.returncode == 1 and out == "", (out, err)
    lines = [line for line in err.splitlines() if line.strip() and "started a kbflow service" not in line]
    assert len(lines) == 1 and "service is stopping" in lines[0], err
    last = json.loads(kbflow("runs", "--json", "--limit", "1", cwd=root, in_process=True).stdout)[0]
    assert last["status"] == "failed" and "stopping" in last["error"], last


def test_a_stale_socket_is_replaced_by_a_new_service(served):
    root, _ = served
    path = socket_path(load_config(root / "kbflow.toml"))
    if not path.exists():  # a socket nobody listens on: what a killed service leaves
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(str(path))
        stale.close()
    assert running_commands(root) == -1  # positive control: nothing answers there
    done = kbflow("search", "restore a snapshot", "--mode", "vector", "--k", "1", "--json", cwd=root)
    assert done.returncode == 0, done.stderr
    assert "started a kbflow service" in done.stderr and "running in this process" not in done.stderr
    assert running_commands(root) == 0
