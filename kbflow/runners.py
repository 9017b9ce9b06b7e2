"""Where ingest's per-batch work runs: in the flow process (default), or on Dask or Ray workers.

Parse, chunk and embed of one batch of documents are Prefect tasks. With the
default runner the flow calls them one batch at a time, as plain task calls.
With `dask` or `ray` they are submitted through prefect-dask / prefect-ray to the
cluster's workers, several batches in flight, while the data-quality gates, the
staging of embedded chunks and the one publish commit stay in the flow process.

A worker loads the embedding model itself, from the config (`ConfiguredEmbedder`
pickles as its `EmbeddingConfig`): the model object never travels, and each
worker process loads it once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyarrow as pa

from kbflow.config import EmbeddingConfig, RunnerConfig
from kbflow.resources import embedder_for

# What a batch pipeline yields for each stage to run on the runner: a task and its parameters.
Step = tuple[Callable[..., Any], dict[str, Any]]
Pipeline = Generator[Step, Any, Any]


@contextmanager
def task_runner(config: RunnerConfig) -> Iterator[Any]:
    """The Prefect task runner of `config` for the duration of a run; None for the default.

    Without an address a local cluster of `config.workers` is started for the run
    and shut down after it.
    """
    if config.kind == "default":
        yield None
        return
    if config.kind == "dask":
        from prefect_dask import DaskTaskRunner

        runner = (
            DaskTaskRunner(address=config.address)
            if config.address
            else DaskTaskRunner(
                cluster_kwargs={
                    "n_workers": config.workers,
                    "threads_per_worker": 1,  # torch uses the cores of a worker itself
                    "processes": config.processes,
                    "dashboard_address": None,
                }
            )
        )
    else:
        from prefect_ray import RayTaskRunner

        init_kwargs = {"logging_level": logging.WARNING}  # a run reports itself; no cluster chatter
        if not config.address:
            init_kwargs |= {"num_cpus": config.workers, "include_dashboard": False}
        runner = RayTaskRunner(address=config.address, init_kwargs=init_kwargs)
    with runner:
        yield runner


def in_flight(config: RunnerConfig) -> int:
    """Batches processed at once: one on the default runner, one per worker plus one otherwise.

    The extra one keeps the workers busy while the flow gates a finished stage.
    """
    return 1 if config.kind == "default" else config.workers + 1


def run_pipelines(runner: Any, pipelines: Iterable[Pipeline], limit: int) -> Iterator[Any]:
    """Drive batch pipelines, at most `limit` at once; yield each one's return value when it ends.

    A pipeline is a generator that yields `(task, parameters)` for each stage and
    receives the stage's result back. With no runner the task is called in the flow
    process; otherwise it is submitted to the runner, and whichever stage finishes
    first moves its pipeline on. Pipelines are started lazily, so only `limit`
    batches hold data at any time. A failed task raises here, ending the run.
    """
    from prefect.futures import as_completed

    def advance(pipeline: Pipeline, value: Any) -> tuple[bool, Any]:
        while True:
            try:
                task, parameters = pipeline.send(value)
            except StopIteration as finished:
                return True, finished.value
            if runner is None:
                value = task(**parameters)
                continue
            return False, runner.submit(task, parameters)

    waiting = iter(pipelines)
    active: dict[Any, Pipeline] = {}
    exhausted = False
    while True:
        while not exhausted and len(active) < limit:
            pipeline = next(waiting, None)
            if pipeline is None:
                exhausted = True
                break
            done, outcome = advance(pipeline, None)
            if done:
                yield outcome
            else:
                active[outcome] = pipeline
        if not active:
            return
        future = next(as_completed(list(active)))
        pipeline = active.pop(future)
        done, outcome = advance(pipeline, future.result())
        if done:
            yield outcome
        else:
            active[outcome] = pipeline


class ConfiguredTokenizer:
    """The configured model's tokenizer, loaded where it is used (pickles as the config)."""

    def __init__(self, config: EmbeddingConfig) -> None:
        self.config = config

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return embedder_for(self.config).tokenizer.offsets(text)

    def count(self, texts: Sequence[str]) -> list[int]:
        return embedder_for(self.config).tokenizer.count(texts)

    def unknown(self, texts: Sequence[str]) -> list[int]:
        return embedder_for(self.config).tokenizer.unknown(texts)


class ConfiguredEmbedder:
    """The configured embedder, loaded where it is used: what a Dask or Ray worker receives.

    Pickles as its `EmbeddingConfig`; `kbflow.resources.embedder_for` loads the model
    once per worker process. Everything else is the loaded embedder's.
    """

    def __init__(self, config: EmbeddingConfig) -> None:
        self.config = config
        self.tokenizer = ConfiguredTokenizer(config)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return embedder_for(self.config).encode(texts)

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes not set in __init__ (name, dim, max_tokens, batch_size ...);
        # guarded so unpickling (before __dict__ is restored) never loads a model.
        if name.startswith("__") or "config" not in self.__dict__:
            raise AttributeError(name)
        return getattr(embedder_for(self.config), name)


def document_batches(items: pa.Table, max_documents: int, max_bytes: int) -> Iterator[pa.Table]:
    """Consecutive slices of `items` (DISCOVERED rows) of at most `max_documents` rows and
    `max_bytes` source bytes; a single item bigger than `max_bytes` is a batch of its own."""
    sizes = items.column("size").to_pylist() if items.num_rows else []
    start, total = 0, 0
    for end, size in enumerate(sizes):
        if end > start and (end - start >= max_documents or total + size > max_bytes):
            yield items.slice(start, end - start)
            start, total = end, 0
        total += size
    if start < len(sizes):
        yield items.slice(start)
