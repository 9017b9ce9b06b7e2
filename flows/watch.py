"""`kbflow watch`: keep the index following its sources as they are edited.

A source with a local folder to follow (`files`: `watched_folder()`) is watched with watchdog; a
burst of edits is debounced into one run per source. Every other source is polled by its
`fingerprint()` (records files' names, sizes and mtimes; an object listing's keys and ETags; a sql
source's cheap query), every `[schedule] records_poll_s`: both through the `Source` protocol
(kbflow.sources), whatever the kind. Each change
either emits a `kbflow.source.changed` event (when a Prefect API is configured
and serves the `ingest-on-change` deployment: `kbflow serve`), or runs the
ingest in this process. Changes that arrive while a run is going are coalesced
into the next run, never dropped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path

from kbflow.config import KbflowConfig
from kbflow.errors import SourceUnreachable
from kbflow.sources.base import Source

log = logging.getLogger("kbflow.watch")
TICK_S = 0.2


class PendingSources:
    """Sources with unprocessed changes, and when each last changed (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_change: dict[str, float] = {}

    def mark(self, source: str) -> None:
        with self._lock:
            self._last_change[source] = time.monotonic()

    def settled(self, quiet_s: float) -> list[str]:
        """Take the sources with no change for `quiet_s` seconds."""
        now = time.monotonic()
        with self._lock:
            ready = sorted(s for s, at in self._last_change.items() if now - at >= quiet_s)
            for source in ready:
                del self._last_change[source]
        return ready


def source_of(path: str, sources: list[Source]) -> str | None:
    """The watched source an event path belongs to, if it is one of its included files."""

    candidate = Path(path).resolve() if os.path.exists(path) else Path(path).absolute()
    for source in sources:
        root = source.watched_folder().resolve()
        if candidate.is_relative_to(root) and source.selects(candidate.relative_to(root).as_posix()):
            return source.name
    return None


def source_fingerprint(source: Source, last: Hashable = ()) -> Hashable:
    """The fingerprint of a polled source. A poll that fails (endpoint or database down for a
    while) keeps `last`: it is logged, and the next poll tries again."""
    try:
        return source.fingerprint()
    except SourceUnreachable as error:  # the message names the endpoint or host, never a credential
        log.warning("%s", error)
        return last


def watch(
    config: KbflowConfig,
    run_source: Callable[[str | None], None],
    source: str | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Catch up once, then call `run_source(name)` after each settled change, until `stop`."""
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    sources = config.select_sources(source)
    files = [s for s in sources if s.watched_folder() is not None]
    polled = [s for s in sources if s.watched_folder() is None]
    pending, stop = PendingSources(), stop or threading.Event()

    class OnChange(FileSystemEventHandler):
        def on_any_event(self, event) -> None:
            if event.event_type in {"opened", "closed_no_write"} or event.is_directory:
                return
            for path in {event.src_path, getattr(event, "dest_path", "") or ""} - {""}:
                name = source_of(path, files)
                if name:
                    pending.mark(name)

    # Polled sources' state before the catch-up run: a change made while it runs is seen after it.
    fingerprints = {s.name: source_fingerprint(s) for s in polled}
    run_source(source)  # catch up with what changed while nobody watched
    observer = Observer()
    for watched in files:
        observer.schedule(OnChange(), str(watched.watched_folder()), recursive=True)
    observer.start()
    next_poll = time.monotonic() + config.schedule.records_poll_s
    try:
        while not stop.is_set():
            if polled and time.monotonic() >= next_poll:
                for each in polled:
                    now = source_fingerprint(each, fingerprints[each.name])
                    if now != fingerprints[each.name]:
                        fingerprints[each.name] = now
                        pending.mark(each.name)
                next_poll = time.monotonic() + config.schedule.records_poll_s
            for name in pending.settled(config.schedule.watch_debounce_s):
                run_source(name)  # edits during this run are marked and picked up next time
            stop.wait(TICK_S)
    finally:
        observer.stop()
        observer.join(10)


def serves_change_trigger() -> bool:
    """Whether a Prefect API is configured and has the `ingest-on-change` deployment."""
    if not os.environ.get("PREFECT_API_URL"):
        return False
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            client.read_deployment_by_name("ingest/ingest-on-change")
        return True
    except ObjectNotFound:
        return False



def react_to_change(
    config_path: str, config: KbflowConfig, source: str | None = None, announce: bool = False
) -> Callable[[str | None], dict]:
    """What `kbflow watch` does with a settled change of a source (None: every watched source).

    With `announce` (a Prefect API serves `ingest-on-change`, see `serves_change_trigger`)
    it emits a `kbflow.source.changed` event per source and returns `{"announced": [names]}`;
    otherwise it runs the ingest flow in this process and returns its report (a blocked
    run's report, not an exception).
    """
    from kbflow.errors import QualityGateFailed
    from kbflow.flows.ingest import ingest
    from kbflow.flows.serve import SOURCE_CHANGED, source_resource

    def announce_change(name: str | None) -> dict:
        from prefect.events import emit_event

        changed = [name] if name else [s.name for s in config.select_sources(source)]
        for each in changed:
            emit_event(event=SOURCE_CHANGED, resource=source_resource(each))
        return {"announced": changed}

    def ingest_here(name: str | None) -> dict:
        try:
            return ingest(config_path=config_path, source=name)
        except QualityGateFailed as blocked:
            return blocked.blocked_report()

    return announce_change if announce else ingest_here
