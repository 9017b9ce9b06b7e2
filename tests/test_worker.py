"""The warm worker of `kbflow server start`: real server, real worker, real model, real CLI processes.

A command run through the worker prints what it prints in-process and ends with the same exit
code; the model is loaded once across commands; with the worker gone, commands run in-process;
`kbflow server stop` ends it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DOCS_SOURCE, SMALL_CORPUS, write, write_config

KBFLOW = str(Path(sys.executable).parent / "kbflow")


def user_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL" and not k.startswith("KBFLOW_")}
    return {**env, "COLUMNS": "120", **extra}


def kbflow(*args: str, cwd: Path, in_process: bool = False) -> subprocess.CompletedProcess:
    env = user_env(KBFLOW_NO_WORKER="1") if in_process else user_env()
    return subprocess.run([KBFLOW, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def worker_status(root: Path) -> dict:
    done = kbflow("server", "status", "--json", cwd=root)
    return json.loads(done.stdout)["worker"]


def without_run(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("run_id", "duration_s")}


@pytest.fixture(scope="module")
def warm_server(tmp_path_factory) -> Path:
    """A small corpus with `kbflow server start` (Prefect server + warm worker) running; its folder."""
    root = tmp_path_factory.mktemp("warm")
    write(root, SMALL_CORPUS)
    write_config(root, DOCS_SOURCE)
    started = kbflow("server", "start", "--json", cwd=root)
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["worker"]["running"], started.stderr
    yield root
    kbflow("server", "stop", cwd=root)


def test_commands_through_the_worker_print_and_exit_as_in_process(warm_server):
    root = warm_server
    before = worker_status(root)["requests"]
    ingested = kbflow("ingest", "--json", cwd=root)
    assert ingested.returncode == 0, ingested.stderr
    assert json.loads(ingested.stdout)["documents"]["new"] == len(SMALL_CORPUS)
    assert worker_status(root)["requests"] == before + 1  # it ran in the worker

    cases = [
        (["ingest", "--json"], 0),  # nothing changed
        (["search", "restore a snapshot", "--k", "2", "--json"], 0),
        (["search", "restore a snapshot", "--k", "2", "--mode", "vector"], 0),  # a Rich table, 120 columns
        (["search", "--queries", "missing.jsonl"], 1),  # an error: message, exit 1
        (["search", "x", "--mode", "bogus"], 2),  # a usage error: exit 2
        (["ingest", "--source", "nope"], 1),
    ]
    for args, code in cases:
        warm, cold = kbflow(*args, cwd=root), kbflow(*args, cwd=root, in_process=True)
        assert (warm.returncode, cold.returncode) == (code, code), (args, warm.stderr, cold.stderr)
        assert warm.stderr == cold.stderr, args
        if args[0] == "ingest" and code == 0:
            assert without_run(json.loads(warm.stdout)) == without_run(json.loads(cold.stdout))
        else:
            assert warm.stdout == cold.stdout, args
    assert worker_status(root)["requests"] == before + 1 + len(cases)
    assert "restore" in json.loads(kbflow(*cases[1][0], cwd=root).stdout)[0]["text"].lower()


def test_the_worker_loads_the_model_once_across_searches(warm_server):
    first = worker_status(warm_server)
    for query in ("restore a snapshot", "which port does the server use"):
        done = kbflow("search", query, "--mode", "vector", "--json", cwd=warm_server)
        assert done.returncode == 0 and json.loads(done.stdout), done.stderr
    after = worker_status(warm_server)
    assert after["requests"] == first["requests"] + 2
    assert after["model_loads"] == first["model_loads"] == 1


def test_a_command_whose_worker_reports_elsewhere_runs_in_process(warm_server):
    done = subprocess.run([KBFLOW, "search", "restore a snapshot", "--mode", "fts", "--json"], cwd=warm_server,
                          env=user_env(PREFECT_API_URL="http://127.0.0.1:9/api"), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "running in this process" in done.stderr and json.loads(done.stdout)


def test_the_docs_search_snippets_answer_from_the_index(warm_server, monkeypatch):
    """docs/snippets/warm_search.py (the local-server guide) and search_api.py (README, Python API page)."""
    snippets = Path(__file__).parent.parent / "docs" / "snippets"
    ingested = kbflow("ingest", "--json", cwd=warm_server)  # the index the snippets read (a no-op if built)
    assert ingested.returncode == 0, ingested.stderr
    monkeypatch.chdir(warm_server)
    namespace: dict = {}
    exec(compile((snippets / "warm_search.py").read_text(encoding="utf-8"), "warm_search.py", "exec"), namespace)
    hits = namespace["search"]("How do I restore a snapshot?", k=2)
    assert hits[0]["uri"] == "backup.md" and "restore" in hits[0]["text"].lower(), hits
    namespace = {}
    exec(compile((snippets / "search_api.py").read_text(encoding="utf-8"), "search_api.py", "exec"), namespace)
    assert namespace["hits"][0]["uri"] == "backup.md", namespace["hits"]


def test_a_client_killed_mid_ingest_leaves_the_worker_serving_and_the_index_as_it_was(warm_server):
    root = warm_server
    before = json.loads(kbflow("status", "--json", cwd=root).stdout)["chunks"]
    write(root, {f"docs/bulk/page-{i}.md": f"# Page {i}\n\n" + f"Paragraph {i} about snapshots and volumes. " * 40
                 for i in range(300)})
    client = subprocess.Popen([KBFLOW, "ingest", "--json"], cwd=root, env=user_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not worker_status(root)["busy"]:
        assert client.poll() is None and time.monotonic() < deadline, "the ingest never reached the worker"
        time.sleep(0.2)
    time.sleep(3)
    os.kill(client.pid, signal.SIGKILL)
    client.wait()
    deadline = time.monotonic() + 30
    while worker_status(root)["busy"]:  # the worker interrupts the command
        assert time.monotonic() < deadline, "the worker is still running the killed client's ingest"
        time.sleep(0.5)
    shutil.rmtree(root / "docs" / "bulk")
    after = kbflow("ingest", "--json", cwd=root)
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["status"] == "no_change"  # nothing of the interrupted run was published
    assert json.loads(after.stdout)["chunks"]["total"] == before


def test_stop_ends_the_worker_and_a_stale_socket_falls_back(warm_server):
    root = warm_server
    pid, path = worker_status(root)["pid"], Path(worker_status(root)["socket"])
    expected = kbflow("search", "restore a snapshot", "--k", "2", "--json", cwd=root)

    stopped = kbflow("server", "stop", "--json", cwd=root)
    assert json.loads(stopped.stdout)["worker_pid"] == pid
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert not path.exists()
    no_worker = kbflow("search", "restore a snapshot", "--k", "2", "--json", cwd=root)
    assert no_worker.returncode == 0 and no_worker.stdout == expected.stdout
    assert no_worker.stderr == ""  # no worker is the ordinary case: nothing to say

    # A worker killed with -9 leaves its socket file behind: nobody answers there.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    fallback = kbflow("search", "restore a snapshot", "--k", "2", "--json", cwd=root)
    assert fallback.returncode == 0 and fallback.stdout == expected.stdout
    assert "did not answer" in fallback.stderr and "running in this process" in fallback.stderr


class WatchedEnviron(dict):
    """An environment that records, after every change, whether the variable all sides share is set."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.shared_seen: list[bool] = []

    def __setitem__(self, name: str, value: str) -> None:
        super().__setitem__(name, value)
        self.shared_seen.append("PREFECT_API_URL" in self)

    def __delitem__(self, name: str) -> None:
        super().__delitem__(name)
        self.shared_seen.append("PREFECT_API_URL" in self)

    def clear(self) -> None:
        super().clear()
        self.shared_seen.append(False)


def test_the_worker_swaps_in_the_clients_environment_without_an_instant_of_no_api_url():
    """Prefect's threads read PREFECT_API_URL while a command runs: it must never be missing."""
    from kbflow.cli.worker_process import become

    worker_env = {"PREFECT_API_URL": "http://127.0.0.1:4200/api", "HOME": "/worker", "WORKER_ONLY": "1"}
    client_env = {"PREFECT_API_URL": "http://127.0.0.1:4200/api", "HOME": "/client", "CLIENT_ONLY": "1"}
    environ = WatchedEnviron(worker_env)
    become(environ, client_env)
    assert dict(environ) == client_env
    become(environ, worker_env)
    assert dict(environ) == worker_env
    assert environ.shared_seen and all(environ.shared_seen)


def test_a_flow_the_worker_runs_in_its_request_thread_sends_no_heartbeats(
        small_corpus, prefect_harness, hash_embedder, monkeypatch):
    """kbflow turns heartbeats off for its flow runs; a settings context is per thread, so the
    worker's request threads need their own (else each run waits up to a second at its end)."""
    import threading

    from prefect.flow_engine import BaseFlowRunEngine

    from kbflow.cli.worker_process import Channel, Worker

    import prefect.context
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY

    # A thread without its own settings context reads Prefect's process-wide one. In the worker that
    # is the one Prefect built at import, with its default heartbeats (the test harness installs the
    # main thread's instead, heartbeats already off: put the import-time default back).
    harness = prefect.context.GLOBAL_SETTINGS_CONTEXT
    at_import = harness.settings.copy_with_update(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 180})
    monkeypatch.setattr(prefect.context, "GLOBAL_SETTINGS_CONTEXT",
                        prefect.context.SettingsContext(profile=harness.profile, settings=at_import))
    beats = []
    monkeypatch.setattr(BaseFlowRunEngine, "_emit_flow_run_heartbeat", lambda self, *args: beats.append(self))
    client, worker_end = socket.socketpair()
    output: list[bytes] = []
    threading.Thread(target=lambda: output.extend(iter(lambda: client.recv(65536), b"")), daemon=True).start()
    request = {"argv": ["ingest", "--json", "--config", str(small_corpus)], "cwd": str(small_corpus.parent),
               "env": dict(os.environ), "tty": {"stdout": False, "stderr": False}, "size": None}
    codes = []
    command = threading.Thread(target=lambda: codes.append(Worker(small_corpus).execute(Channel(worker_end), request)))
    command.start()
    command.join(300)
    worker_end.close()
    assert codes == [0], b"".join(output).decode(errors="replace")[-2000:]
    assert beats == []
