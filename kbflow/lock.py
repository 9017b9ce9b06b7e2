"""One writer per store: an exclusive OS file lock held for the whole write, and, for a store
on object storage written from several machines, a Prefect global concurrency limit.

`fcntl.flock` is released by the kernel when its holder exits or is killed, so a crashed
writer never leaves a stale lock behind. A second writer waits (and says for whom) instead
of interleaving its commits with the first one's. The file lives in a local store's folder;
for an object-store URI it lives beside the config, so it serialises this machine's writers
only. Writers on other machines share no disk, but they can share a Prefect API: when one is
configured (`PREFECT_API_URL`, a profile, or `kbflow server`), the writer also holds the one
slot of a global concurrency limit named after the store. Its slot is a lease that the holder
renews; a writer killed with SIGKILL stops renewing and the slot frees itself when the lease
runs out (`LEASE_S`). A temporary Prefect server lives and dies with one process: it protects
nothing across machines, so it is not used.
"""

from __future__ import annotations

# fcntl, not the filelock package: the same flock underneath, and this lock file carries its holder's pid,
# which a waiting writer names; filelock would add a dependency for the loop below and nothing more.
import fcntl
import hashlib
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from kbflow.config import KbflowConfig
from kbflow.errors import KbflowError

log = logging.getLogger("kbflow.lock")
POLL_S = 0.2
LEASE_S = 60.0  # how long a killed writer's slot stays taken (Prefect's minimum); renewed while held


class StoreBusy(KbflowError, TimeoutError):
    """Another writer held the store for longer than we were willing to wait."""


def _store_digest(config: KbflowConfig) -> str:
    return hashlib.sha256(config.store.uri.encode()).hexdigest()[:16]


def lock_path(config: KbflowConfig) -> Path:
    if config.store.is_local:
        return Path(config.store.uri) / ".kbflow-writer.lock"
    return config.root / f".kbflow-writer-{_store_digest(config)}.lock"


def concurrency_limit_name(config: KbflowConfig) -> str:
    """The global concurrency limit that guards a store: readable, unique per store uri.

    >>> from kbflow.config import KbflowConfig, StoreConfig
    >>> concurrency_limit_name(KbflowConfig(store=StoreConfig(uri="s3://team-kb/prod/kb")))
    'kbflow-writer-s3-team-kb-prod-kb-2dfc70b77be5c252'
    """
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", config.store.uri).strip("-")[-60:]
    return f"kbflow-writer-{readable}-{_store_digest(config)}"


def shared_api_url() -> str | None:
    """The Prefect API this process reports to, if other processes and machines can share it."""
    from kbflow.prefect_api import explicit_api_url, is_temporary

    url = explicit_api_url()
    return None if url is None or is_temporary(url) else url


@contextmanager
def file_lock(config: KbflowConfig, timeout_s: float | None = None) -> Iterator[None]:
    """Hold this machine's writer lock file; wait for it (at most `timeout_s`, default forever)."""
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


@contextmanager
def global_lock(config: KbflowConfig, timeout_s: float | None = None) -> Iterator[None]:
    """Hold the one slot of the store's Prefect global concurrency limit (created on first use)."""
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency

    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists

    name = concurrency_limit_name(config)
    with get_client(sync_client=True) as client:
        # Create-if-missing, never update: an operator may have raised or paused the limit on purpose.
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        except ObjectAlreadyExists:
            pass
    acquired = False
    try:
        with concurrency(name, occupy=1, timeout_seconds=timeout_s, lease_duration=LEASE_S, strict=True):
            acquired = True
            yield
    except TimeoutError:
        if acquired:  # raised by the write itself, not by waiting for the slot
            raise
        raise StoreBusy(f"store {config.store.uri} stayed locked (Prefect concurrency limit {name!r}) "
                        f"for {timeout_s:.0f} s") from None


@contextmanager
def store_lock(config: KbflowConfig, timeout_s: float | None = None) -> Iterator[None]:
    """Hold the store's writer lock for a whole write: this machine's lock file, then, for a
    store on object storage with a shared Prefect API, the store's global concurrency limit
    (always in that order, so two writers never hold one each and wait for the other)."""
    with ExitStack() as held:
        started = time.monotonic()
        held.enter_context(file_lock(config, timeout_s))
        if not config.store.is_local and shared_api_url() is not None:
            left = None if timeout_s is None else max(0.1, timeout_s - (time.monotonic() - started))
            held.enter_context(global_lock(config, left))
        yield
