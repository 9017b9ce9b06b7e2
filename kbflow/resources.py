"""What the stages use, handed in rather than reached for: the store and the embedding model.

Dagster's resources pattern: an entry point (a flow, the CLI, the Python API, the local
service) opens one `Resources` for its config and hands `resources.store` and
`resources.embedder` to the stages; no task opens a store or loads a model by itself.

Which embedder a config's model name gives is decided by one loader, `kbflow.models.load_embedder`
by default. A test (or an application) provides another for a scope with `provided_embedder(loader)`:
every entry point inside that scope, and every thread Prefect starts from it (task runners copy the
context), uses it. Dask and Ray workers run in other processes and always load the real model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from kbflow.config import EmbeddingConfig, KbflowConfig
from kbflow.models import Embedder, load_embedder
from kbflow.store import CHUNKS, Store

EmbedderLoader = Callable[[EmbeddingConfig], Embedder]

_EMBEDDER_LOADER: ContextVar[EmbedderLoader] = ContextVar("kbflow_embedder_loader", default=load_embedder)


@contextmanager
def provided_embedder(loader: EmbedderLoader) -> Iterator[EmbedderLoader]:
    """Within this scope, every entry point embeds with `loader(config)` instead of the configured model."""
    token = _EMBEDDER_LOADER.set(loader)
    try:
        yield loader
    finally:
        _EMBEDDER_LOADER.reset(token)


def embedder_for(config: EmbeddingConfig) -> Embedder:
    """The embedder of `config` as the current scope provides it (the real model by default)."""
    return _EMBEDDER_LOADER.get()(config)


@dataclass
class Resources:
    """One entry point's store and embedder, opened once and handed to the stages.

    The embedder loads on first use: a command that never embeds (fts search) never loads a model.
    """

    config: KbflowConfig
    store: Store
    loader: EmbedderLoader = field(default_factory=_EMBEDDER_LOADER.get)
    _embedder: Embedder | None = field(default=None, repr=False)

    @classmethod
    def open(cls, config: KbflowConfig, *, existing: bool = False) -> Resources:
        """Resources for `config`: its store (`existing`: for reading, an index must be there) and embedder."""
        store = Store.existing(config.store) if existing else Store(config.store)
        return cls(config, store)

    @classmethod
    def for_search(cls, config: KbflowConfig) -> Resources:
        """Read-only resources for search: a clear error for an empty store or another model's index."""
        resources = cls.open(config, existing=True)
        resources.store.table(CHUNKS)  # a clear error before loading a model for an empty store
        resources.store.check_model(config.embedding.model)
        return resources

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = self.loader(self.config.embedding)
        return self._embedder
