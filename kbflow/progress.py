"""Progress of long stages, reported to whoever listens, and the point where a run can be cancelled.

Tasks report; they do not know about terminals or sockets. With no listener this is a no-op.
`counted` and `encode` report a loop's rows and an encode's texts, at most STEPS times a stage.

A listener is the CLI's progress bar (`listen`, for the whole process) or one request of the kbflow
service (`scoped`, for the thread running it and the tasks it starts: a context variable, so two
requests never see each other's). A request's scope also holds a cancel token: every report is a
batch boundary, and a report after the token is set raises `Cancelled` there, so the run stops
between batches (recorded as failed, nothing half-published) instead of being interrupted at an
arbitrary point.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, TypeVar

from kbflow.errors import KbflowError

if TYPE_CHECKING:
    import numpy as np

    from kbflow.models import Embedder

Listener = Callable[[str, int, int], None]  # (stage, done, total)
_listener: Listener | None = None  # the process's (the CLI's bar)
_scope: ContextVar[tuple[Listener | None, CancelToken | None] | None] = ContextVar("kbflow_progress", default=None)
STEPS = 16  # updates per stage, at most: each costs a terminal refresh, an encode step a model call
Item = TypeVar("Item")


class Cancelled(KbflowError):
    """The run was cancelled at a batch boundary (its client went away, or the service is stopping)."""


class CancelToken:
    """Set once, by whoever wants the run to stop; checked at the next report."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


def listen(listener: Listener | None) -> None:
    """The process-wide listener (the CLI's progress bar); a `scoped` one wins where it is set."""
    global _listener
    _listener = listener


@contextmanager
def scoped(listener: Listener | None, token: CancelToken | None = None) -> Iterator[None]:
    """Reports of this context (thread, and the tasks it starts) go to `listener`; `token` cancels it."""
    reset = _scope.set((listener, token))
    try:
        yield
    finally:
        _scope.reset(reset)


def check_cancelled() -> None:
    """Raise Cancelled if this context's run was cancelled."""
    scope = _scope.get()
    if scope is not None and scope[1] is not None and scope[1].cancelled:
        raise Cancelled(scope[1].reason or "cancelled")


def report(stage: str, done: int, total: int) -> None:
    check_cancelled()
    scope = _scope.get()
    listener = scope[0] if scope is not None else _listener
    if listener is not None:
        listener(stage, done, total)


def counted(items: Iterable[Item], stage: str, total: int, done: int = 0) -> Iterator[Item]:
    """The items, reporting `stage` as `done` + items consumed out of `total` (the bar shows at once)."""
    every = max(1, total // STEPS)
    report(stage, done, total)
    for done, item in enumerate(items, start=done + 1):
        yield item
        if done % every == 0 or done == total:
            report(stage, done, total)


def encode_step(texts: int, batch: int) -> int:
    """Texts per encode call: whole model batches, at most STEPS calls (so at most STEPS reports)."""
    return batch * max(1, -(-texts // (STEPS * batch)))


def encode(embedder: Embedder, texts: Sequence[str], stage: str) -> np.ndarray:
    """`embedder.encode(texts)` in a few calls of whole batches, reporting `stage` texts done."""
    import numpy as np

    if not texts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    step = encode_step(len(texts), int(getattr(embedder, "batch_size", 64)))
    report(stage, 0, len(texts))
    parts = []
    for begin in range(0, len(texts), step):
        parts.append(embedder.encode(list(texts[begin : begin + step])))
        report(stage, min(begin + step, len(texts)), len(texts))
    return np.concatenate(parts)
