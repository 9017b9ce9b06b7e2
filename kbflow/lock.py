"""One writer per store: an exclusive OS file lock held for the whole write.

`fcntl.flock` is released by the kernel when its holder exits or is killed, so
a crashed writer never leaves a stale lock behind. A second writer waits (and
says for whom) instead of interleaving its commits with the first one's.
For an object-store URI the lock file lives beside the config: it serialises
the writers of this machine only.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kbflow.config import KbflowConfig

log = logging.getLogger("kbflow.lock")
POLL_S = 0.2


class StoreBusy(TimeoutError):
    """Another writer held the store for longer than we were willing to wait."""


def lock_path(config: KbflowConfig) -> Path:
    if config.store.is_local:
        return Path(config.store.uri) / ".kbflow-writer.lock"
    digest = hashlib.sha256(config.store.uri.encode()).hexdigest()[:16]
    return config.root / f".kbflow-writer-{digest}.lock"


@contextmanager
def store_lock(config: KbflowConfig, timeout_s: float | None = None) -> Iterator[None]:
    """Hold the store's writer lock; wait for it (at most `timeout_s`, default forever)."""
    path = lock_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        started, announced = time.monotonic(), False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not announced:
                    handle.seek(0)
                    log.warning("store %s is being written by %s; waiting", config.store.uri, handle.read() or "?")
                    announced = True
                if timeout_s is not None and time.monotonic() - started > timeout_s:
                    raise StoreBusy(f"store {config.store.uri} stayed locked for {timeout_s:.0f} s") from None
                time.sleep(POLL_S)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)
