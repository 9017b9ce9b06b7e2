"""The ingest flow on small real data: real Prefect runs, LanceDB tables and GX suites.

These use the fast test embedder; tests/test_end_to_end.py runs the real model.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3

import lancedb
import pytest

from kbflow.config import load_config
from kbflow.errors import ModelMismatch, QualityGateFailed
from kbflow.flows.ingest import ingest
from kbflow.search import search
from kbflow.store import Store
from kbflow.tasks.quality.suites import bundled_expectations_dir

from conftest import DOCS_SOURCE, write, write_config
from fakes import minimal_pdf

pytestmark = pytest.mark.usefixtures("prefect_harness")


def run(config_path, **kwargs) -> dict:
    return ingest(config_path=str(config_path), **kwargs)


def table_versions(config_path) -> dict[str, int]:
    db = lancedb.connect(load_config(config_path).store.uri)
    return {name: db.open_table(name).version for name in ("chunks", "documents")}


def chunks_by_uri(config_path) -> dict[str, list[dict]]:
    rows = lancedb.connect(load_config(config_path).store.uri).open_table("chunks").to_arrow().to_pylist()
    grouped: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: (r["uri"], r["ordinal"])):
        grouped.setdefault(row["uri"], []).append(row)
    return grouped


def test_cold_ingest_publishes_documents_chunks_and_a_run(small_corpus, hash_embedder):
    report = run(small_corpus)
    assert report["status"] == "published"
    assert report["documents"] == {"new": 3, "changed": 0, "unchanged": 0, "deleted": 0, "quarantined": 0}
    chunks = chunks_by_uri(small_corpus)
    assert set(chunks) == {"install.md", "backup.md", "billing.txt"}
    assert report["chunks"]["embedded"] == report["chunks"]["total"] == sum(len(c) for c in chunks.values())
    first = chunks["install.md"][1]
    assert first["heading"] == "Installation > Ports" and first["text"].startswith("Installation > Ports\n")
    assert first["model"] == "all-MiniLM-L6-v2" and first["run_id"] == report["run_id"] and first["tenant"] == "public"
    store = Store(load_config(small_corpus).store)
    (last_run,) = store.runs()
    assert last_run["run_id"] == report["run_id"] and last_run["status"] == "published"
    assert set(json.loads(last_run["stage_durations"])) == {"discover", "parse", "chunk", "embed", "publish", "quality_checks"}
    assert last_run["prefect_flow_run_id"]
    index_types = {index.index_type for index in store.table("chunks").list_indices()}
    assert "FTS" in index_types


def test_rerun_without_changes_writes_nothing(small_corpus, hash_embedder):
    run(small_corpus)
    versions = table_versions(small_corpus)
    hash_embedder.encoded.clear()
    report = run(small_corpus)
    assert report["status"] == "no_change"
    assert report["documents"]["unchanged"] == 3 and report["chunks"]["embedded"] == 0
    assert table_versions(small_corpus) == versions
    assert hash_embedder.encoded == []


def test_edit_reembeds_only_changed_chunks(small_corpus, hash_embedder):
    run(small_corpus)
    before = chunks_by_uri(small_corpus)["install.md"]
    path = small_corpus.parent / "docs/install.md"
    path.write_text(path.read_text().replace("port 8420", "port 9000"))
    hash_embedder.encoded.clear()
    report = run(small_corpus)
    assert report["documents"]["changed"] == 1 and report["documents"]["unchanged"] == 2
    assert report["chunks"]["embedded"] == 1 and report["chunks"]["reused"] == len(before) - 1
    assert len(hash_embedder.encoded) == 1 and "9000" in hash_embedder.encoded[0]
    after = chunks_by_uri(small_corpus)["install.md"]
    assert [c["chunk_id"] for c in after if "Ports" not in c["heading"]] == [
        c["chunk_id"] for c in before if "Ports" not in c["heading"]
    ]
    assert sum(c["chunk_id"] not in {b["chunk_id"] for b in before} for c in after) == 1
    assert report["chunks"]["deleted"] == 1  # the old Ports chunk


def test_deleted_document_disappears_from_the_index(small_corpus, hash_embedder):
    run(small_corpus)
    n_billing = len(chunks_by_uri(small_corpus)["billing.txt"])
    (small_corpus.parent / "docs/billing.txt").unlink()
    report = run(small_corpus)
    assert report["documents"]["deleted"] == 1 and report["chunks"]["deleted"] == n_billing
    assert "billing.txt" not in chunks_by_uri(small_corpus)
    hits = search(load_config(small_corpus), ["invoices refunds"], k=10, mode="fts")[0]
    assert all(hit["uri"] != "billing.txt" for hit in hits)
    assert Store(load_config(small_corpus).store).count("documents") == 2


def test_rename_reuses_every_vector(small_corpus, hash_embedder):
    run(small_corpus)
    docs = small_corpus.parent / "docs"
    shutil.move(docs / "backup.md", docs / "restore-guide.md")
    hash_embedder.encoded.clear()
    report = run(small_corpus)
    assert (report["documents"]["new"], report["documents"]["deleted"]) == (1, 1)
    assert report["chunks"]["embedded"] == 0 and hash_embedder.encoded == []
    assert set(chunks_by_uri(small_corpus)) == {"install.md", "restore-guide.md", "billing.txt"}


BAD_FILES = {
    "docs/empty.txt": "",
    "docs/whitespace.md": "   \n\n\t  \n",
    "docs/binary.txt": b"\x00\xff\x00\xfe" * 64,
    "docs/truncated.pdf": minimal_pdf(["Release notes"] * 30)[:300],
    "docs/latin1.txt": "Le café coûte deux euros. Naïve question, déjà répondue.".encode("cp1252"),
    "docs/one-line.txt": " ".join(f"word{i}" for i in range(3000)),
    "docs/nested.html": "<h1>Deep</h1>" + "<div>" * 20000 + "buried treasure" + "</div>" * 20000,
}


def test_bad_inputs_are_quarantined_and_the_rest_is_indexed(small_corpus, hash_embedder, tmp_path):
    write(small_corpus.parent, BAD_FILES)
    with small_corpus.open("a") as handle:  # half of this corpus is broken on purpose
        handle.write("\n[quality]\nmax_quarantined_share = 0.6\n")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("private text outside the source root")
    os.symlink(outside, small_corpus.parent / "docs/escape.txt")
    report = run(small_corpus)
    assert report["status"] == "published"
    quarantine = {row["uri"]: row for row in Store(load_config(small_corpus).store).quarantine()}
    assert set(quarantine) == {"empty.txt", "whitespace.md", "binary.txt", "truncated.pdf", "escape.txt"}
    assert quarantine["binary.txt"]["stage"] == "parse" and quarantine["binary.txt"]["reason"] == "binary_content"
    assert quarantine["empty.txt"]["stage"] == "quality:documents"
    assert quarantine["escape.txt"]["reason"] == "symlink_outside_root"
    assert report["documents"]["quarantined"] == 5
    indexed = chunks_by_uri(small_corpus)
    assert "café" in indexed["latin1.txt"][0]["text"]
    assert len(indexed["one-line.txt"]) > 1 and max(c["n_tokens"] for c in indexed["one-line.txt"]) <= 64
    assert any("buried treasure" in c["text"] for c in indexed["nested.html"])
    assert not any("private text" in c["text"] for chunks in indexed.values() for c in chunks)
    # Quarantined documents are remembered and not retried until they change.
    rerun = run(small_corpus)
    assert rerun["status"] == "no_change"
    store = Store(load_config(small_corpus).store)
    assert len(store.quarantine()) == 5  # all runs: each item once
    # The symlink is set aside again by the rerun, and the rerun's own view shows it.
    assert rerun["documents"]["quarantined"] == 1
    assert [row["uri"] for row in store.quarantine(rerun["run_id"])] == ["escape.txt"]


def test_an_item_set_aside_counts_as_quarantined_not_new_whether_a_file_or_a_sql_row(tmp_path, hash_embedder):
    # A binary file is set aside by parse, a row without text by discovery: each counted as new
    # and quarantined (the file) or quarantined only (the row) until the rule was one for both.
    write(tmp_path, {"docs/ports.md": "# Ports\n\nThe server listens on port 8420 by default.\n",
                     "docs/blob.txt": bytes(range(256)) * 8})
    with sqlite3.connect(tmp_path / "tickets.db") as db:
        db.execute("CREATE TABLE tickets (id INTEGER, body TEXT)")
        db.executemany("INSERT INTO tickets VALUES (?, ?)", [(1, "Refunds take five business days."), (2, None)])
    config_path = write_config(tmp_path, DOCS_SOURCE + """
        [[sources]]
        name = "tickets"
        kind = "sql"
        url = "sqlite:///tickets.db"
        table = "tickets"
        id_field = "id"
        text_field = "body"
        """, "[quality]\nmax_quarantined_share = 0.6\n")
    report = run(config_path)
    assert report["status"] == "published" and set(chunks_by_uri(config_path)) == {"ports.md", "tickets#1"}
    assert report["documents"] == {"new": 2, "changed": 0, "unchanged": 0, "deleted": 0, "quarantined": 2}
    # The file is remembered with its hash (not retried until it changes); the row is read, and set aside, again.
    assert run(config_path)["documents"] == {"new": 0, "changed": 0, "unchanged": 3, "deleted": 0, "quarantined": 1}


def test_tenant_filter_applies_before_ranking(tmp_path, hash_embedder):
    write(tmp_path, {
        "acme/plan.md": "# Plan\n\nThe secret launch codename is Bluebird for spring.",
        "globex/notes.md": "# Notes\n\nOur office plants need watering on Mondays.",
    })
    config_path = write_config(tmp_path, """
        [[sources]]
        name = "acme"
        kind = "files"
        path = "acme/"
        tenant = "acme"
        [[sources]]
        name = "globex"
        kind = "files"
        path = "globex/"
        tenant = "globex"
        """)
    run(config_path)
    config = load_config(config_path)
    query = ["secret launch codename Bluebird"]
    for mode in ("vector", "fts", "hybrid"):
        unfiltered = search(config, query, k=1, mode=mode)[0]
        assert unfiltered[0]["uri"] == "plan.md"
        filtered = search(config, query, k=5, tenant="globex", mode=mode)[0]
        assert {hit["source"] for hit in filtered} <= {"globex"}
    assert search(config, query, k=5, tenant="globex", mode="vector")[0][0]["uri"] == "notes.md"


@pytest.mark.parametrize("path", ["records/", "records/faq.jsonl", "records/*.jsonl"])
def test_records_source_is_incremental(tmp_path, hash_embedder, path):
    # A folder, the one file, or a glob: the same documents, the same incremental behaviour.
    lines = [{"id": "a", "answer": "Reset your password from the login page.", "category": "account"},
             {"id": "b", "answer": "Exports are zipped Markdown files.", "category": "data"}]
    write(tmp_path, {"records/faq.jsonl": "\n".join(json.dumps(line) for line in lines)})
    config_path = write_config(tmp_path, f"""
        [[sources]]
        name = "faq"
        kind = "records"
        path = "{path}"
        id_field = "id"
        text_field = "answer"
        metadata = ["category"]
        tenant = "support"
        """)
    assert run(config_path)["documents"]["new"] == 2
    lines[1]["answer"] = "Exports are zipped Markdown files with attachments."
    write(tmp_path, {"records/faq.jsonl": "\n".join(json.dumps(line) for line in lines)})
    report = run(config_path)
    assert report["documents"] == {"new": 0, "changed": 1, "unchanged": 1, "deleted": 0, "quarantined": 0}
    chunk = chunks_by_uri(config_path)["faq.jsonl#b"][0]
    assert json.loads(chunk["metadata"]) == {"category": "data"} and chunk["tenant"] == "support"


def test_blocking_gate_leaves_the_store_exactly_as_it_was(small_corpus, hash_embedder):
    run(small_corpus)
    config = load_config(small_corpus)
    versions = table_versions(small_corpus)
    hits_before = search(config, ["nightly backups"], k=3)[0]
    checks = small_corpus.parent / "checks"
    shutil.copytree(bundled_expectations_dir(), checks, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    suite = json.loads((checks / "documents.json").read_text())
    suite["expectations"].append({"type": "expect_column_values_to_match_regex",
                                  "kwargs": {"column": "uri", "regex": r"\.md$"}, "meta": {"on_failure": "block"}})
    (checks / "documents.json").write_text(json.dumps(suite))
    with small_corpus.open("a") as handle:
        handle.write('\n[quality]\nexpectations_dir = "checks"\n')
    write(small_corpus.parent, {"docs/new-note.txt": "A text file the gate does not allow."})
    with pytest.raises(QualityGateFailed) as blocked:
        run(small_corpus)
    assert blocked.value.report["status"] == "blocked"
    assert [f.type for f in blocked.value.failures] == ["expect_column_values_to_match_regex"]
    assert table_versions(small_corpus) == versions
    assert search(config, ["nightly backups"], k=3)[0] == hits_before
    store = Store(config.store)
    recorded = store.runs()[0]
    assert recorded["status"] == "blocked" and recorded["dq_success"] is False
    # The totals are the index's, which the blocked run left as it was (not 0).
    assert blocked.value.report["chunks"]["total"] == json.loads(recorded["chunks"])["total"] == store.count("chunks") > 0


def test_a_different_model_is_refused_instead_of_mixing_vectors(small_corpus, hash_embedder):
    run(small_corpus)
    with small_corpus.open("a") as handle:
        handle.write('\n[embedding]\nmodel = "another-model"\n')
    with pytest.raises(ModelMismatch, match="kbflow reindex"):
        run(small_corpus)  # refused even with nothing to do: the config no longer matches the index
    with pytest.raises(ModelMismatch):
        search(load_config(small_corpus), ["anything"])
    store = Store(load_config(small_corpus).store)
    refused = store.runs()[0]
    # Recorded as what it was: refused, no check ran (not "passed"), the index's chunks as they are.
    assert (refused["status"], refused["dq_success"]) == ("refused", None) and "kbflow reindex" in refused["error"]
    assert json.loads(refused["chunks"])["total"] == store.count("chunks") > 0


def test_chunks_quarantined_by_the_chunks_suite_are_never_embedded(small_corpus, hash_embedder):
    # A user's own chunks rule quarantines rows; the gate runs before embed, so their
    # text costs no model time (and they are not published).
    checks = small_corpus.parent / "checks"
    shutil.copytree(bundled_expectations_dir(), checks, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    suite = json.loads((checks / "chunks.json").read_text())
    suite["expectations"].append({"type": "expect_column_values_to_not_match_regex",
                                  "kwargs": {"column": "uri", "regex": "^billing"}, "meta": {"on_failure": "quarantine"}})
    (checks / "chunks.json").write_text(json.dumps(suite))
    with small_corpus.open("a") as handle:
        handle.write('\n[quality]\nexpectations_dir = "checks"\nmax_quarantined_share = 0.5\n')
    report = run(small_corpus)
    assert report["status"] == "published"
    assert hash_embedder.encoded and not any("Refunds" in text for text in hash_embedder.encoded)
    assert not any("Refunds" in row["text"] for rows in chunks_by_uri(small_corpus).values() for row in rows)
    quarantined = Store(load_config(small_corpus).store).quarantine()
    assert [(row["uri"], row["stage"]) for row in quarantined] == [("billing.txt", "quality:chunks")]


NAVIGATION_PAGE = """<html><head><title>26.3. Failover</title></head><body>
<div class="navheader"><table><tr><th colspan="3">26.3. Failover</th></tr>
<tr><td><a href="a.html">Prev</a></td><td><a href="b.html">Up</a></td><td><a href="c.html">Next</a></td></tr>
</table></div>
<div class="navfooter"><table><tr><td><a href="a.html">Prev</a></td><td><a href="b.html">Up</a></td></tr>
<tr><td>Chapter 26. High Availability</td><td><a href="index.html">Home</a></td><td><a href="c.html">Next</a></td></tr>
</table></div></body></html>"""


def test_junk_content_is_quarantined_alone_with_named_reasons(small_corpus, hash_embedder):
    import numpy as np

    rng = np.random.default_rng(0)
    write(small_corpus.parent, {
        # one "word" of 200,000 letters and digits: one token to the model, nothing to embed
        "docs/token-less.txt": "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz0123456789"), 200_000)),
        "docs/repetitive.txt": "buy cheap widgets online right now " * 3000,
        "docs/navigation.html": NAVIGATION_PAGE,
    })
    with small_corpus.open("a") as handle:  # half of this corpus is junk on purpose
        handle.write("\n[quality]\nmax_quarantined_share = 0.5\n")
    report = run(small_corpus)
    assert report["status"] == "published"
    assert set(chunks_by_uri(small_corpus)) == {"install.md", "backup.md", "billing.txt"}
    reasons = {}
    for row in Store(load_config(small_corpus).store).quarantine():
        reasons.setdefault(row["uri"], []).append((row["stage"], row["reason"]))
    assert set(reasons) == {"token-less.txt", "repetitive.txt", "navigation.html"}
    assert any(stage == "quality:chunks" and "chars_per_token" in reason for stage, reason in reasons["token-less.txt"])
    assert any(stage == "quality:documents" and "dup_5gram_char_frac" in reason
               for stage, reason in reasons["repetitive.txt"])
    content_rules = ("navigation_share", "link_line_share", "informative_words", "n_chars")
    assert all(any(rule in reason for rule in content_rules) for _, reason in reasons["navigation.html"])
    # The run's Prefect artifact shows what was set aside, and why.
    from prefect.artifacts import Artifact

    markdown = Artifact.get("kbflow-quality").data
    assert f"`{report['run_id']}`" in markdown and "## Quarantine: " in markdown
    assert "| docs | repetitive.txt | quality:documents | " in markdown and "dup_5gram_char_frac" in markdown


@pytest.mark.parametrize("batch_documents", [1, 100])
def test_the_unique_chunk_ratio_verdict_does_not_depend_on_the_batch_size(tmp_path, hash_embedder, batch_documents):
    # Four pages with one and the same text: 1 distinct chunk text in 4. (Four: from
    # chunking.boilerplate_min_documents = 5 pages on, a line on every page is boilerplate and removed.)
    # Their bytes differ (trailing newlines): byte-identical files would be indexed once (issue 26 #12).
    write(tmp_path, {f"docs/page{i}.txt": "This page intentionally holds the same sentence as every other page."
                     + "\n" * i for i in range(4)})
    config_path = write_config(tmp_path, DOCS_SOURCE, f"[ingest]\nbatch_documents = {batch_documents}\n")
    with pytest.raises(QualityGateFailed, match=r"unique_chunk_ratio 0\.25 < min_unique_chunk_ratio 0\.30 \(source docs\)"):
        run(config_path)
    assert Store(load_config(config_path).store).runs()[0]["status"] == "blocked"
