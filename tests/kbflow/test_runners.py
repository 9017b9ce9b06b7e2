"""Runner selection, document batches and the bounded pipeline driver."""

from __future__ import annotations

import pickle
import threading
import time

import pyarrow as pa
import pytest
from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner

import kbflow.runners
from kbflow.resources import provided_embedder
from kbflow.config import ConfigError, EmbeddingConfig, RunnerConfig
from kbflow.runners import ConfiguredEmbedder, document_batches, in_flight, run_pipelines
from kbflow.schemas import DISCOVERED


def test_runner_option_overrides_the_config():
    configured = RunnerConfig(kind="dask", address="tcp://scheduler:8786", workers=4)
    assert configured.with_option(None) == configured
    assert configured.with_option("dask").address == "tcp://scheduler:8786"  # same kind keeps the address
    assert configured.with_option("dask=tcp://other:8786").address == "tcp://other:8786"
    ray = configured.with_option("ray")
    assert (ray.kind, ray.address, ray.workers) == ("ray", None, 4)
    assert configured.with_option("default").kind == "default"
    with pytest.raises(ConfigError, match="dask\\[=ADDRESS\\]"):
        configured.with_option("spark")
    with pytest.raises(ConfigError):
        configured.with_option("default=tcp://x:1")
    assert in_flight(RunnerConfig()) == 1 and in_flight(configured) == 5


def items(sizes: list[int]) -> pa.Table:
    rows = [dict.fromkeys(DISCOVERED.names, "x") | {"doc_id": str(i), "size": size, "mtime": 0.0}
            for i, size in enumerate(sizes)]
    return pa.Table.from_pylist(rows, schema=DISCOVERED)


def test_document_batches_bound_documents_and_bytes_and_keep_order():
    batches = list(document_batches(items([10] * 7), max_documents=3, max_bytes=1000))
    assert [b.column("doc_id").to_pylist() for b in batches] == [["0", "1", "2"], ["3", "4", "5"], ["6"]]
    by_bytes = list(document_batches(items([40, 40, 40, 500, 10]), max_documents=100, max_bytes=100))
    # A document bigger than the byte budget is a batch of its own, never dropped.
    assert [b.num_rows for b in by_bytes] == [2, 1, 1, 1]
    assert list(document_batches(items([]), 10, 10)) == []


def test_default_runner_runs_pipelines_one_at_a_time_in_order():
    log = []

    def pipeline(n):
        doubled = yield (lambda x: x * 2), {"x": n}
        log.append(("gate", n))
        tripled = yield (lambda x: x * 3), {"x": doubled}
        return tripled

    assert list(run_pipelines(None, (pipeline(n) for n in range(3)), limit=1)) == [0, 6, 12]
    assert log == [("gate", 0), ("gate", 1), ("gate", 2)]


@task
def slow_square(x: int, active: list, peak: list, lock) -> int:
    with lock:
        active.append(x)
        peak[0] = max(peak[0], len(active))
    time.sleep(0.05 * (3 - x % 3))
    with lock:
        active.remove(x)
    return x * x


def test_a_task_runner_keeps_at_most_limit_batches_in_flight(prefect_harness):
    active, peak, lock = [], [0], threading.Lock()
    started = []

    def pipeline(n):
        started.append(n)
        squared = yield slow_square, {"x": n, "active": active, "peak": peak, "lock": lock}
        return n, squared

    @flow
    def drive() -> list:
        with ThreadPoolTaskRunner(max_workers=4) as runner:
            return list(run_pipelines(runner, (pipeline(n) for n in range(6)), limit=2))

    results = drive()
    assert sorted(results) == [(n, n * n) for n in range(6)]
    assert peak[0] <= 2 and started == list(range(6))


def test_configured_embedder_pickles_as_its_config_and_loads_where_used():
    loaded = []

    class Fake:
        name, dim, max_tokens, batch_size = "fake", 3, 16, 8

        class tokenizer:  # noqa: N801
            @staticmethod
            def count(texts):
                return [len(t) for t in texts]

        def encode(self, texts):
            return [[1.0, 0.0, 0.0] for _ in texts]

    def load(config):
        loaded.append(config.model)
        return Fake()

    with provided_embedder(load):
        embedder = ConfiguredEmbedder(EmbeddingConfig(model="/models/m"))
        copy = pickle.loads(pickle.dumps(embedder))
        assert loaded == []  # pickling and unpickling load nothing
        assert len(pickle.dumps(embedder)) < 2000
        assert (copy.dim, copy.name, copy.batch_size) == (3, "fake", 8)
        assert copy.tokenizer.count(["abc"]) == [3] and len(copy.encode(["a", "b"])) == 2
    assert set(loaded) == {"/models/m"}
