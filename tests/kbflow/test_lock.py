from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

from kbflow.config import load_config
from kbflow.lock import StoreBusy, store_lock

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
