"""Progress of long stages, reported to whoever listens (the CLI's progress bar).

Tasks report; they do not know about terminals. With no listener this is a no-op.
`counted` and `encode` report a loop's rows and an encode's texts, at most STEPS times a stage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import numpy as np

    from kbflow.models import Embedder

Listener = Callable[[str, int, int], None]  # (stage, done, total)
_listener: Listener | None = None
STEPS = 16  # updates per stage, at most: each costs a terminal refresh, an encode step a model call
Item = TypeVar("Item")


def listen(listener: Listener | None) -> None:
    global _listener
    _listener = listener


def report(stage: str, done: int, total: int) -> None:
    if _listener is not None:
        _listener(stage, done, total)


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
