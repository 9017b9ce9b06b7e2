from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest

from kbflow.config import QualityConfig
from kbflow.errors import QualityGateFailed
from kbflow.schemas import CHUNKED, DISCOVERED, DOCUMENTS, PARSED
from kbflow.tasks.discover import ChangeSet
from kbflow.tasks.embed import vector_column
from kbflow.tasks.quality import QualityGate, check_table, data_docs_index, load_suite, run_profile


def gate(tmp_path=None, **settings) -> QualityGate:
    """A gate for one fake run; with tmp_path it keeps results in a GX file context there."""
    config = QualityConfig(results_dir=tmp_path / "quality" if tmp_path else None, **settings)
    run = SimpleNamespace(run_id="run-1", stage_durations={}, quality_results=None, dq_success=True)
    return QualityGate(config, run)


def documents(texts: dict[str, str], fmt: str = "md") -> pa.Table:
    rows = [{"doc_id": doc_id, "source": "s", "tenant": "t", "uri": f"{doc_id}.{fmt}", "format": fmt,
             "content_hash": "h", "size": len(text.encode()) or 1, "title": "", "text": text, "sections": [],
             "metadata": "{}"} for doc_id, text in texts.items()]
    return pa.Table.from_pylist(rows, schema=PARSED)


def test_failing_rows_are_quarantined_and_the_rest_pass():
    table = documents({
        "good": "Real content for a real document.",
        "blank": "   ",
        "stub": "tiny",
        "garbled": "\ufffd" * 10 + "abcdefghijkl",
        "controls": "text\x01\x02\x03\x04 with control bytes",
    })
    kept, quarantined = check_table(gate(), "documents", table)
    assert kept.column("doc_id").to_pylist() == ["good"]
    reasons = {q.doc_id: q.reason for q in quarantined}
    assert "n_chars" in reasons["blank"] and "n_chars" in reasons["stub"]
    assert "replacement_char_ratio" in reasons["garbled"] and "control_char_ratio" in reasons["controls"]
    assert all(q.stage == "quality:documents" for q in quarantined)
    assert json.loads(next(q.detail for q in quarantined if q.doc_id == "stub")) == {"n_chars": 4}


def test_text_to_bytes_applies_to_plain_text_only():
    padded = "short text here" + " " * 400  # 15 characters of text in 415 bytes
    kept, quarantined = check_table(gate(), "documents", documents({"padded": padded}, fmt="txt"))
    assert kept.num_rows == 0 and "text_to_bytes" in quarantined[0].reason
    kept, _ = check_table(gate(), "documents", documents({"page": padded}, fmt="html"))
    assert kept.num_rows == 1  # markup makes bytes meaningless for html


def test_allowed_languages_when_configured():
    table = documents({"en": "The server listens on port 8080 and restarts nightly.",
                       "fr": "Le serveur écoute sur le port 8080 et redémarre chaque nuit."})
    assert check_table(gate(), "documents", table)[0].num_rows == 2
    kept, quarantined = check_table(gate(allowed_languages=["en"]), "documents", table)
    assert kept.column("doc_id").to_pylist() == ["en"] and "language" in quarantined[0].reason


def test_duplicate_doc_ids_block():
    rows = documents({"same": "one real text"}).to_pylist() * 2
    with pytest.raises(QualityGateFailed) as blocked:
        check_table(gate(), "documents", pa.Table.from_pylist(rows, schema=PARSED))
    assert [(f.type, f.column) for f in blocked.value.failures] == [("expect_column_values_to_be_unique", "doc_id")]


def chunk_table(texts: list[str]) -> pa.Table:
    rows = [{"chunk_id": f"c{i}", "doc_id": "d", "source": "s", "uri": "u", "tenant": "t", "ordinal": i, "heading": "",
             "text": text, "text_hash": f"h-{text}", "n_tokens": 3 + len(text.split()), "metadata": "{}"}
            for i, text in enumerate(texts)]
    return pa.Table.from_pylist(rows, schema=CHUNKED)


def test_chunks_over_the_model_limit_are_quarantined_and_mostly_repeated_text_blocks():
    kept, quarantined = check_table(gate(), "chunks", chunk_table(["a b", "a b c d e f g h"]), {"max_tokens": 6})
    assert kept.column("chunk_id").to_pylist() == ["c0"] and quarantined[0].chunk_id == "c1"
    with pytest.raises(QualityGateFailed, match="proportion_of_unique_values"):
        check_table(gate(), "chunks", chunk_table(["footer"] * 9 + ["body"]), {"max_tokens": 64})


def test_wrong_vector_dimension_blocks_and_bad_vectors_are_quarantined():
    vectors = np.eye(4, dtype=np.float32)
    vectors[1] *= 3  # not normalised
    vectors[2, 0] = np.nan
    chunks = pa.table({"chunk_id": list("abcd"), "doc_id": list("abcd"), "source": ["s"] * 4, "uri": ["u"] * 4,
                       "vector": vector_column(vectors, 4)})
    kept, quarantined = check_table(gate(), "embeddings", chunks, {"dim": 4})
    assert kept.column("chunk_id").to_pylist() == ["a", "d"]
    assert {q.chunk_id for q in quarantined} == {"b", "c"}
    with pytest.raises(QualityGateFailed, match=r"embeddings\.expect_column_values_to_be_between\(dim\)"):
        check_table(gate(), "embeddings", chunks, {"dim": 384})


def manifest(source: str, n: int) -> pa.Table:
    return pa.Table.from_pylist([{"doc_id": f"{source}{i}", "source": source, "uri": f"{i}", "status": "active"}
                                 for i in range(n)], schema=DOCUMENTS)


def changes(new: int = 0, deleted: pa.Table | None = None) -> ChangeSet:
    items = pa.Table.from_pylist([{"doc_id": f"n{i}", "source": "docs", "uri": f"n{i}"} for i in range(new)],
                                 schema=DISCOVERED).append_column("change", pa.array(["new"] * new, pa.string()))
    return ChangeSet(to_parse=items, unchanged=0, deleted=deleted if deleted is not None else manifest("docs", 0))


def test_mass_deletion_blocks_unless_allowed():
    before = manifest("docs", 10)
    profile = run_profile(before, changes(deleted=before.slice(0, 6)), [])
    assert profile.to_dict("records")[0]["deleted_share"] == 0.6
    with pytest.raises(QualityGateFailed, match="deleted_share"):
        gate().check("run", profile)
    allowed = gate()
    allowed = QualityGate(allowed.config, allowed.run, allow_mass_delete=True)
    assert allowed.check("run", profile).blocking_failures == []
    assert gate().check("run", run_profile(before, changes(deleted=before.slice(0, 4)), [])).success


def test_a_source_growing_or_shrinking_too_fast_blocks_when_configured():
    before = manifest("docs", 10)
    assert gate().check("run", run_profile(before, changes(new=40), [])).success
    with pytest.raises(QualityGateFailed, match="document_count_ratio"):
        gate(max_document_count_ratio=3.0).check("run", run_profile(before, changes(new=40), []))


def test_gate_keeps_results_and_builds_data_docs(tmp_path):
    quality = gate(tmp_path)
    with quality:
        check_table(quality, "documents", documents({"good": "Real content here.", "blank": " "}))
    summary = json.loads(quality.summary_path.read_text())
    assert summary["run_id"] == "run-1" and summary["success"] is False
    (suite,) = summary["suites"]
    assert suite["name"] == "documents" and suite["expectations"][0]["success"] is False  # failures first
    assert set(suite["expectations"][0]) >= {"type", "column", "success", "observed", "unexpected_count", "examples"}
    assert suite["expectations"][0]["examples"][0]["uri"] == "blank.md"
    assert quality.run.quality_results == str(quality.summary_path) and quality.run.dq_success is False
    docs = data_docs_index(tmp_path / "quality")
    assert summary["data_docs"] == str(docs) and docs.is_file()


def test_user_suites_are_loaded_from_a_folder_and_policies_are_required(tmp_path):
    (tmp_path / "documents.json").write_text(json.dumps({"name": "documents", "expectations": [
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "n_chars", "min_value": 50}}]}))
    with pytest.raises(ValueError, match="on_failure"):
        load_suite("documents", tmp_path)
    suite = json.loads((tmp_path / "documents.json").read_text())
    suite["expectations"][0]["meta"] = {"on_failure": "quarantine"}
    (tmp_path / "documents.json").write_text(json.dumps(suite))
    kept, quarantined = check_table(gate(expectations_dir=tmp_path), "documents",
                                    documents({"short": "tiny text", "long": "x" * 80}))
    assert kept.column("doc_id").to_pylist() == ["long"] and quarantined[0].doc_id == "short"


def test_bundled_suites_have_at_least_twelve_expectations():
    counts = {name: len(load_suite(name)["expectations"]) for name in ("documents", "chunks", "embeddings", "run")}
    assert sum(counts.values()) >= 12 and all(counts.values())
