from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from kbflow.errors import QualityGateFailed
from kbflow.schemas import PARSED
from tasks.embed import vector_column
from tasks.quality import check_table, load_suite


def documents(texts: dict[str, str]) -> pa.Table:
    rows = [{"doc_id": doc_id, "source": "s", "tenant": "t", "uri": f"{doc_id}.md", "format": "md",
             "content_hash": "h", "size": 1, "title": "", "text": text, "sections": [], "metadata": "{}"}
            for doc_id, text in texts.items()]
    return pa.Table.from_pylist(rows, schema=PARSED)


def test_failing_rows_are_quarantined_and_the_rest_pass():
    table = documents({"good": "Real content.", "blank": "   ", "garbled": "\ufffd" * 10 + "abc"})
    kept, quarantined, result = check_table("documents", table, {"min_document_chars": 1})
    assert kept.column("doc_id").to_pylist() == ["good"]
    reasons = {q.doc_id: q.reason for q in quarantined}
    assert "n_chars" in reasons["blank"] and "replacement_char_ratio" in reasons["garbled"]
    assert all(q.stage == "quality:documents" for q in quarantined)
    assert not result.success and result.blocking_failures == []


def test_a_blocking_expectation_stops_the_run():
    table = documents({"same": "one text"}).to_pylist() * 2
    with pytest.raises(QualityGateFailed) as blocked:
        check_table("documents", pa.Table.from_pylist(table, schema=PARSED), {"min_document_chars": 1})
    assert [(f.type, f.column) for f in blocked.value.failures] == [("expect_column_values_to_be_unique", "doc_id")]


def test_wrong_vector_dimension_blocks_and_non_normalised_vectors_are_quarantined():
    vectors = np.eye(4, dtype=np.float32)
    vectors[1] *= 3  # not normalised
    vectors[2, 0] = np.nan
    chunks = pa.table({"chunk_id": list("abcd"), "doc_id": list("abcd"), "source": ["s"] * 4, "uri": ["u"] * 4,
                       "vector": vector_column(vectors, 4)})
    kept, quarantined, _ = check_table("embeddings", chunks, {"dim": 4})
    assert kept.column("chunk_id").to_pylist() == ["a", "d"]
    assert {q.chunk_id for q in quarantined} == {"b", "c"}
    with pytest.raises(QualityGateFailed):
        check_table("embeddings", chunks, {"dim": 384})


def test_user_suites_are_loaded_from_a_folder_and_policies_are_required(tmp_path):
    (tmp_path / "documents.json").write_text(json.dumps({"name": "documents", "expectations": [
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "n_chars", "min_value": 50}}]}))
    with pytest.raises(ValueError, match="on_failure"):
        load_suite("documents", tmp_path)
    suite = json.loads((tmp_path / "documents.json").read_text())
    suite["expectations"][0]["meta"] = {"on_failure": "quarantine"}
    (tmp_path / "documents.json").write_text(json.dumps(suite))
    kept, quarantined, _ = check_table("documents", documents({"short": "tiny", "long": "x" * 80}), {}, tmp_path)
    assert kept.column("doc_id").to_pylist() == ["long"] and quarantined[0].doc_id == "short"
