from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from kbflow.config import load_config
from kbflow.lock import StoreBusy, concurrency_limit_name, lock_path, store_lock

from conftest import write_config


def hold_lock(config_path, ready) -> None:
    with store_lock(load_config(config_path)):
        ready.set()
        time.sleep(600)


def test_a_second_writer_waits_and_a_killed_holder_frees_the_lock(tmp_path):
    config_path = write_config(tmp_path, "")
    config = load_config(config_path)
    ready = multiprocessing.Event()
    holder = multiprocessing.get_context("fork").Process(target=hold_lock, args=(config_path, ready))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(StoreBusy), store_lock(config, timeout_s=0.5):
            pass
        os.kill(holder.pid, signal.SIGKILL)  # a crashed writer: no chance to clean up
        holder.join(30)
        started = time.monotonic()
        with store_lock(config, timeout_s=10):
            assert time.monotonic() - started < 5
    finally:
        if holder.is_alive():
            holder.kill()


def try_lock(config_path, outcome) -> None:
    try:
        with store_lock(load_config(config_path), timeout_s=0.3):
            outcome.put("acquired")
    except StoreBusy:
        outcome.put("busy")


def another_writer(config_path) -> str:
    """What a writer in another process gets right now: the lock, or StoreBusy."""
    context = multiprocessing.get_context("fork")
    outcome = context.Queue()
    process = context.Process(target=try_lock, args=(config_path, outcome))
    process.start()
    process.join(30)
    return outcome.get(timeout=5)


def test_sequential_runs_each_hold_the_lock_and_release_it(tmp_path):
    config_path = write_config(tmp_path, "")
    config = load_config(config_path)
    for _ in range(3):
        with store_lock(config, timeout_s=1):  # StoreBusy if the previous run had not released it
            assert another_writer(config_path) == "busy"
        assert another_writer(config_path) == "acquired"


def test_the_lock_is_not_reentrant(tmp_path):
    """A nested write in the same process waits like any other writer (flock is per open file)."""
    config = load_config(write_config(tmp_path, ""))
    with store_lock(config, timeout_s=1):
        with pytest.raises(StoreBusy), store_lock(config, timeout_s=0.3):
            pass


# -- a store on object storage: the Prefect global concurrency limit named after it --------------


def remote_store_config(root, uri: str = "s3://team-kb/prod/kb"):
    """A config for a store on object storage; the lock never opens the store, so no server is needed."""
    root.mkdir(parents=True, exist_ok=True)
    path = write_config(root, "")
    path.write_text(path.read_text(encoding="utf-8").replace('uri = ".kbflow"', f'uri = "{uri}"'), encoding="utf-8")
    return load_config(path)


def active_slots(config) -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(concurrency_limit_name(config)).active_slots


@pytest.mark.usefixtures("prefect_harness")
def test_a_store_on_object_storage_is_guarded_across_machines_by_a_prefect_limit(tmp_path):
    """Two machines share no lock file (it lives beside each one's config) but share the Prefect API."""
    here = remote_store_config(tmp_path / "machine-a", uri=f"s3://team-kb/{tmp_path.name}/kb")
    there = remote_store_config(tmp_path / "machine-b", uri=here.store.uri)
    assert lock_path(here) != lock_path(there)
    with store_lock(here, timeout_s=10):
        assert active_slots(here) == 1
        with pytest.raises(StoreBusy, match="concurrency limit"), store_lock(there, timeout_s=1):
            pass
    assert active_slots(here) == 0
    with store_lock(there, timeout_s=10):  # free again: the other machine writes now
        assert active_slots(there) == 1


@pytest.mark.usefixtures("prefect_harness")
def test_a_local_store_takes_no_prefect_limit(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    config = load_config(write_config(tmp_path, ""))
    with store_lock(config, timeout_s=5), get_client(sync_client=True) as client:
        with pytest.raises(ObjectNotFound):
            client.read_global_concurrency_limit_by_name(concurrency_limit_name(config))


WRITER = """
import sys, time
import kbflow.lock
from kbflow.config import load_config
started = time.monotonic()
with kbflow.lock.store_lock(load_config(sys.argv[1]), timeout_s=float(sys.argv[2])):
    print(f"held after {time.monotonic() - started:.1f} s", flush=True)
    time.sleep(float(sys.argv[3]))
"""


def test_a_killed_writer_on_another_machine_frees_the_limit_when_its_lease_runs_out(tmp_path, prefect_server):
    """Two processes with their own lock files and a real `prefect server start`: the second waits while the
    first holds the slot, and gets it once the first, killed with SIGKILL, stops renewing its lease."""
    here = remote_store_config(tmp_path / "machine-a", uri=f"s3://team-kb/{tmp_path.name}/kb")
    there = remote_store_config(tmp_path / "machine-b", uri=here.store.uri)
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    holder = subprocess.Popen([sys.executable, "-c", WRITER, str(there.root / "kbflow.toml"), "60", "600"],
                              env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().startswith("held")
        busy = subprocess.run([sys.executable, "-c", WRITER, str(here.root / "kbflow.toml"), "2", "0"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert busy.returncode != 0 and "StoreBusy" in busy.stderr and "concurrency limit" in busy.stderr
        holder.kill()  # no chance to release: only the lease's expiry frees the slot
        holder.wait(30)
        after = subprocess.run([sys.executable, "-c", WRITER, str(here.root / "kbflow.toml"), "120", "0"],
                               env=env, capture_output=True, text=True, timeout=180)
        assert after.returncode == 0 and after.stdout.startswith("held"), after.stderr
    finally:
        if holder.poll() is None:
            holder.kill()


def test_a_temporary_server_is_not_a_shared_api(monkeypatch):
    from kbflow import prefect_api
    from kbflow.lock import shared_api_url

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4999/api")
    assert shared_api_url() == "http://127.0.0.1:4999/api"
    monkeypatch.setattr(prefect_api, "_temporary_urls", {"http://127.0.0.1:4999/api"})
    assert shared_api_url() is None
