"""Start-up: read-only commands import nothing heavy; what a CLI process starts dies with it.

Both run real `kbflow` CLI processes: imports are only observable in a fresh process,
and a `kill -9` only on a real one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from conftest import write

TESTS = Path(__file__).parent
HEAVY = ("great_expectations", "torch", "sentence_transformers", "prefect.server")

# Runs the CLI with the given arguments, then prints which heavy modules it imported.
CLI_IMPORTS = textwrap.dedent("""
    import json, sys
    from kbflow.cli import main
    sys.argv = ["kbflow", *sys.argv[1:]]
    try:
        main()
    except SystemExit as done:
        code = done.code
    else:
        code = 0
    heavy = [m for m in {heavy!r} if m in sys.modules]
    print(json.dumps({{"code": code, "heavy": heavy, "prefect": "prefect" in sys.modules}}))
""").format(heavy=HEAVY)

# `kbflow ingest --json` with the test embedder; with a marker path, the embedder writes it and
# hangs (the test kills the process there).
CLI_INGEST = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.append({tests!r})  # for fakes; appended: tests/kbflow/ must not shadow kbflow
    from fakes import HashEmbedder
    import kbflow.flows.ingest

    config, marker = sys.argv[1], (Path(sys.argv[2]) if len(sys.argv) > 2 else None)

    class Embedder(HashEmbedder):
        def encode(self, texts):
            if marker is not None:
                marker.write_text("embedding")
                time.sleep(600)
            return super().encode(texts)

    kbflow.flows.ingest.load_embedder = lambda embedding: Embedder(name=embedding.model)
    sys.argv = ["kbflow", "ingest", "--config", config, "--json"]
    from kbflow.cli import main
    main()
""").format(tests=str(TESTS))
KBFLOW = str(Path(sys.executable).parent / "kbflow")


def no_prefect_api_env() -> dict[str, str]:
    """The environment of a user with no Prefect server configured."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_LOGGING_LEVEL"] = "CRITICAL"
    return env


@pytest.fixture
def ingested(small_corpus, prefect_harness, hash_embedder) -> Path:
    from kbflow.flows.ingest import ingest

    ingest(config_path=str(small_corpus))
    return small_corpus


@pytest.mark.parametrize("command", [
    ["status"], ["runs"], ["quality"], ["quarantine"], ["search", "restore a snapshot", "--mode", "fts"],
])
def test_read_only_commands_import_neither_gx_nor_torch_nor_a_prefect_server(ingested, command):
    done = subprocess.run([sys.executable, "-c", CLI_IMPORTS, *command, "--config", str(ingested), "--json"],
                          capture_output=True, text=True, timeout=300, env=no_prefect_api_env())
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["code"] == 0, done.stderr
    assert outcome["heavy"] == []
    assert not outcome["prefect"]  # none of them runs a flow


def test_trace_imports_nothing_heavy(ingested):
    import lancedb

    from kbflow.config import load_config

    chunk_id = lancedb.connect(load_config(ingested).store.uri).open_table("chunks").to_arrow()["chunk_id"][0]
    done = subprocess.run([sys.executable, "-c", CLI_IMPORTS, "trace", str(chunk_id), "--config", str(ingested),
                           "--json"], capture_output=True, text=True, timeout=300, env=no_prefect_api_env())
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["code"] == 0, done.stderr
    assert outcome["heavy"] == []


# -- no orphans ----------------------------------------------------------------------------------


def _descendants(root: int) -> list[psutil.Process]:
    """Every live process below `root` (psutil keeps each one's start time, so a reused pid is not it)."""
    try:
        children = psutil.Process(root).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [child for child in children if _alive(child)]


def _alive(process: psutil.Process) -> bool:
    """Still running, as the same process (not a zombie, not a new process with the reused pid)."""
    try:
        return process.is_running() and process.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False


def _gone(pid: int) -> bool:
    """No process runs under `pid` (a zombie counts as gone)."""
    try:
        return not _alive(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return True


def _write_docs(root: Path) -> Path:
    write(root, {f"docs/page-{i}.md": f"# Page {i}\n\nParagraph {i} about backups and restores.\n"
                 for i in range(20)})
    config = root / "kbflow.toml"
    config.write_text('[[sources]]\nname = "docs"\nkind = "files"\npath = "docs"\ninclude = ["**/*.md"]\n')
    return config


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="children die with their parent by PR_SET_PDEATHSIG")
def test_kill_9_of_an_ingest_leaves_no_process_it_started(tmp_path):
    config = _write_docs(tmp_path)
    marker = tmp_path / "marker"
    cli = subprocess.Popen([sys.executable, "-c", CLI_INGEST, str(config), str(marker)], env=no_prefect_api_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300  # a fresh Prefect database migrates first; slow on a busy machine
        while not marker.exists():
            assert cli.poll() is None, cli.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the ingest never reached embedding"
            time.sleep(0.2)
        started = _descendants(cli.pid)
        assert started, "the ingest started no process: nothing to check (was a Prefect API configured?)"
        os.kill(cli.pid, signal.SIGKILL)
        cli.wait()
        time.sleep(10)
        survivors = [process for process in started if _alive(process)]
        assert survivors == [], [process.cmdline() for process in survivors]
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()


# -- kbflow server -------------------------------------------------------------------------------


def test_flow_commands_report_to_the_stores_kbflow_server_and_stop_ends_it(tmp_path):
    import httpx

    config, env = _write_docs(tmp_path), no_prefect_api_env()
    started = subprocess.run([KBFLOW, "server", "start", "--config", str(config), "--json"], env=env,
                             capture_output=True, text=True, timeout=400)
    assert started.returncode == 0, started.stderr
    server = json.loads(started.stdout)
    try:
        assert server["running"] and Path(server["home"]) == tmp_path / ".kbflow" / "prefect"
        done = subprocess.run([sys.executable, "-c", CLI_INGEST, str(config)], env=env, capture_output=True,
                              text=True, timeout=400)
        assert done.returncode == 0, done.stderr
        assert "temporary Prefect server" not in done.stderr
        assert "running in this process" not in done.stderr  # the warm worker ran it
        report = json.loads(done.stdout.strip().splitlines()[-1])

        from kbflow.config import load_config
        from kbflow.store import Store

        flow_run_id = Store(load_config(config).store).run(report["run_id"])["prefect_flow_run_id"]
        flow_run = httpx.get(f"{server['url']}/flow_runs/{flow_run_id}").json()
        assert flow_run["name"] and flow_run["state_type"] == "COMPLETED"
        task_runs = httpx.post(f"{server['url']}/task_runs/filter",
                               json={"flow_runs": {"id": {"any_": [flow_run_id]}}}).json()
        assert {"discover", "parse", "chunk", "embed"} <= {run["name"].rsplit("-", 1)[0] for run in task_runs}
        artifacts = httpx.post(f"{server['url']}/artifacts/filter",
                               json={"flow_runs": {"id": {"any_": [flow_run_id]}}}).json()
        assert artifacts  # the data-quality summary of the run
    finally:
        stopped = subprocess.run([KBFLOW, "server", "stop", "--config", str(config), "--json"], env=env,
                                 capture_output=True, text=True, timeout=60)
    assert json.loads(stopped.stdout) == {"stopped": True, "pid": server["pid"], "worker_pid": server["worker"]["pid"]}
    assert _gone(server["pid"]) and _gone(server["worker"]["pid"])
    status = subprocess.run([KBFLOW, "server", "status", "--config", str(config)], env=env, capture_output=True)
    assert status.returncode == 1
