"""Dataset kinds as data: one record per kind, and the lookups the build makes in it."""

from __future__ import annotations

import pyarrow as pa
import pytest

from kbflow.schemas import dataset_schema
from kbflow.tasks.datasets.kinds import DATASET_KINDS, KINDS, dataset_kind
from kbflow.tasks.quality.suites import bundled_expectations_dir


def test_every_kind_has_a_record_a_schema_and_a_bundled_suite():
    assert tuple(KINDS) == DATASET_KINDS == ("embedding-pairs", "reranker", "sft", "raft")
    for kind, spec in KINDS.items():
        assert spec.name == kind and (bundled_expectations_dir() / f"{spec.suite}.json").is_file()
        written = spec.schema(2).names
        assert spec.id_column in written and "doc_id" in written
        assert all(column in written for column in spec.chunk_columns)
    assert dataset_kind("reranker").base is KINDS["embedding-pairs"] and dataset_kind("sft").base is KINDS["sft"]
    with pytest.raises(ValueError, match="use one of embedding-pairs, reranker, sft, raft"):
        dataset_kind("pairs")


def test_fields_expand_negatives_and_read_messages_by_role():
    pairs = pa.Table.from_pylist(
        [{"anchor": "q", "positive": "p", "negative_1": "n1", "negative_2": None, "query_id": "1",
          "positive_chunk_id": "c1", "doc_id": "d", "source": "s", "generator": "ict"}],
        schema=dataset_schema("embedding-pairs", 2),
    )
    spec = dataset_kind("embedding-pairs")
    assert spec.text_columns_of(pairs) == ["anchor", "positive", "negative_1", "negative_2"]
    assert spec.row_fields(pairs) == [["q", "p", "n1", ""]]
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "why?"},
                {"role": "assistant", "content": "because"}]
    sft = pa.Table.from_pylist([{"messages": messages, "prompt": "why?", "completion": "because", "id": "s:1",
                                 "doc_id": "d", "source": "s"}], schema=dataset_schema("sft"))
    assert dataset_kind("sft").row_fields(sft) == [["why?", "because"]]
    assert dataset_kind("sft").text_columns_of(sft) == ["messages", "prompt", "completion"]


def test_dependencies_are_the_chunks_a_row_comes_from():
    assert dataset_kind("embedding-pairs").dependencies({"positive_chunk_id": "c1"}) == ["c1"]
    assert dataset_kind("reranker").dependencies({"chunk_id": None}) == []  # a negative's row
    raft_row = {"oracle_chunk_id": "c1", "distractor_chunk_ids": ["c2", "c3"]}
    assert dataset_kind("raft").dependencies(raft_row) == ["c1", "c2", "c3"]
    assert dataset_kind("sft").dependencies({"id": "s:1"}) == []
