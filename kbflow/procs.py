"""Which process a recorded pid is now: checked before kbflow signals a process it started.

A pid recorded in a file (`service.json`, `server.json`) may have been reused by an unrelated
process after a crash or a reboot; signalling it blindly kills that process. A record therefore
keeps the process's start time and a word of its command line, and `same_process` checks both.
psutil reads them where it is installed; otherwise /proc (Linux), the only other place they are.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    started: float  # seconds since the epoch (psutil) or clock ticks since boot (/proc): compared as recorded
    cmdline: tuple[str, ...]


def identity(pid: int) -> ProcessIdentity | None:
    """The process now running as `pid`; None if there is none (or it cannot be read)."""
    try:
        import psutil  # a test dependency of kbflow, optional at run time: /proc otherwise
    except ImportError:
        return _proc_identity(pid)
    try:
        process = psutil.Process(pid)
        return ProcessIdentity(pid, round(process.create_time(), 2), tuple(process.cmdline()))
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _proc_identity(pid: int) -> ProcessIdentity | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            words = tuple(w.decode(errors="replace") for w in cmdline.read().split(b"\0") if w)
    except OSError:
        return None
    return ProcessIdentity(pid, float(fields[19]), words)  # field 22 of stat: start time in ticks


def same_process(pid: int, started: float | None, marker: str) -> bool:
    """Whether `pid` is still the process recorded with start time `started` whose command line holds `marker`."""
    now = identity(pid)
    if now is None or started is None:
        return False
    return abs(now.started - started) < 0.05 + 1e-9 and any(marker in word for word in now.cmdline)


def terminate(pid: int, timeout: float, group: bool = True) -> None:
    """SIGTERM (its process group when `group`), SIGKILL after `timeout`; the caller checked `same_process`."""
    kill = os.killpg if group else os.kill
    try:
        kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    try:
        kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
