from __future__ import annotations

import json
import os

import pyarrow as pa
import pytest

from kbflow.config import source_config
from kbflow.sources.base import Source
from kbflow.globs import matches
from kbflow.schemas import DOCUMENTS
from kbflow.sources.base import make_doc_id
from kbflow.tasks.sources.discover import diff_against_documents, discover_source

from conftest import write


def files_source(path, **extra) -> Source:
    return source_config(name="docs", kind="files", path=path, **extra)


def test_globs_match_like_gitignore():
    assert matches("a.md", ["**/*.md"], []) and matches("x/y/a.md", ["**/*.md"], [])
    assert not matches("a.md.bak", ["**/*.md"], [])
    assert not matches("drafts/a.md", ["**/*.md"], ["drafts/**"])
    assert matches("top.txt", ["*.txt"], []) and not matches("sub/top.txt", ["*.txt"], [])


def test_files_are_hashed_and_filtered(tmp_path):
    write(tmp_path, {"a.md": "# A\n\nalpha", "sub/b.txt": "beta", "skip.bin": "zzz"})
    found = discover_source(files_source(tmp_path), max_file_bytes=1000)
    rows = {row["uri"]: row for row in found.items.to_pylist()}
    assert set(rows) == {"a.md", "sub/b.txt"}
    assert rows["a.md"]["doc_id"] == make_doc_id("docs", "a.md")
    assert len(rows["a.md"]["content_hash"]) == 64 and rows["sub/b.txt"]["format"] == "txt"


def test_symlink_out_of_the_root_is_quarantined_never_read(tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("do not index me")
    root = tmp_path / "docs"
    write(root, {"inside.txt": "fine"})
    os.symlink(outside, root / "link.txt")
    os.symlink(tmp_path, root / "loop_dir")  # a symlinked directory is not entered
    found = discover_source(files_source(root), max_file_bytes=1000)
    assert found.items.column("uri").to_pylist() == ["inside.txt"]
    assert [(q.uri, q.reason) for q in found.quarantined] == [("link.txt", "symlink_outside_root")]


def test_oversized_file_is_quarantined_and_kept(tmp_path):
    write(tmp_path, {"big.txt": "x" * 500, "small.txt": "ok"})
    found = discover_source(files_source(tmp_path), max_file_bytes=100)
    assert found.items.column("uri").to_pylist() == ["small.txt"]
    assert found.quarantined[0].reason == "file_too_large" and ("docs", "big.txt") in found.unreadable


def test_records_rows_become_documents_and_bad_lines_are_reported(tmp_path):
    lines = [json.dumps({"id": "r1", "answer": "one", "cat": "x"}), "{not json", json.dumps({"id": "r2", "answer": "two"}),
             json.dumps({"answer": "no id"}), json.dumps({"id": "r1", "answer": "again"})]
    write(tmp_path, {"faq.jsonl": "\n".join(lines) + "\n"})
    source = source_config(name="faq", kind="records", path=tmp_path, id_field="id", text_field="answer", metadata=["cat"])
    found = discover_source(source, max_file_bytes=10_000)
    assert found.items.column("uri").to_pylist() == ["faq.jsonl#r1", "faq.jsonl#r2"]
    assert sorted(q.reason for q in found.quarantined) == ["bad_record", "duplicate_id", "missing_id"]


def test_csv_records(tmp_path):
    write(tmp_path, {"kb.csv": "id,answer\n1,first answer\n2,second answer\n"})
    source = source_config(name="kb", kind="records", path=tmp_path, id_field="id", text_field="answer")
    assert discover_source(source, 10_000).items.column("uri").to_pylist() == ["kb.csv#1", "kb.csv#2"]


def test_a_records_path_may_be_a_folder_one_file_or_a_glob(tmp_path):
    write(tmp_path, {"records/faq.jsonl": json.dumps({"id": "r1", "answer": "one"}) + "\n",
                     "records/more.jsonl": json.dumps({"id": "m1", "answer": "two"}) + "\n",
                     "records/kb.csv": "id,answer\n1,first answer\n"})

    def found(path) -> list[tuple[str, str]]:
        source = source_config(name="faq", kind="records", path=path, id_field="id", text_field="answer")
        items = discover_source(source, max_file_bytes=10_000).items
        return list(zip(items.column("uri").to_pylist(), items.column("doc_id").to_pylist()))

    folder = found(tmp_path / "records")
    assert [uri for uri, _ in folder] == ["faq.jsonl#r1", "kb.csv#1", "more.jsonl#m1"]
    # The same uris and doc_ids whichever way the file is named: switching keeps the index's state.
    assert found(tmp_path / "records/faq.jsonl") == folder[:1]
    assert found(tmp_path / "records/*.jsonl") == [folder[0], folder[2]]
    assert found(tmp_path / "records/**/kb.*") == [folder[1]]


def test_a_missing_source_path_names_the_source_and_what_path_may_be(tmp_path):
    for path in (tmp_path / "nope", tmp_path / "nope.jsonl", tmp_path / "nope/*.jsonl"):
        source = source_config(name="faq", kind="records", path=path, id_field="id", text_field="answer")
        with pytest.raises(FileNotFoundError, match="source 'faq': path .* does not exist; .*one file, or a glob"):
            discover_source(source, max_file_bytes=10_000)


def documents_of(table: pa.Table, hashes: dict[str, str] | None = None) -> pa.Table:
    rows = [{**row, "content_hash": (hashes or {}).get(row["uri"], row["content_hash"]), "status": "active",
             "n_chunks": 1} for row in table.to_pylist()]
    return pa.Table.from_pylist([{k: r.get(k) for k in DOCUMENTS.names} for r in rows], schema=DOCUMENTS)


def test_diff_sorts_new_changed_unchanged_deleted(tmp_path):
    write(tmp_path, {"keep.md": "same", "edit.md": "before", "gone.md": "bye"})
    before = discover_source(files_source(tmp_path), 1000)
    documents = documents_of(before.items)
    write(tmp_path, {"edit.md": "after", "new.md": "hello"})
    (tmp_path / "gone.md").unlink()
    changes = diff_against_documents(discover_source(files_source(tmp_path), 1000), documents)
    assert changes.counts == {"new": 1, "changed": 1, "unchanged": 1, "deleted": 1}
    assert sorted(changes.to_parse.column("uri").to_pylist()) == ["edit.md", "new.md"]
    assert changes.deleted.column("uri").to_pylist() == ["gone.md"]


def test_unreadable_file_is_not_counted_as_deleted(tmp_path):
    write(tmp_path, {"big.txt": "small at first"})
    documents = documents_of(discover_source(files_source(tmp_path), 1000).items)
    write(tmp_path, {"big.txt": "x" * 5000})
    changes = diff_against_documents(discover_source(files_source(tmp_path), 1000), documents)
    assert changes.counts["deleted"] == 0


def test_sphinx_source_files_are_parsed_as_their_markup(tmp_path):
    from kbflow.formats import file_format

    assert file_format(tmp_path / "library" / "json.rst.txt") == "rst"
    assert file_format(tmp_path / "guide.md.txt") == "md"
    assert file_format(tmp_path / "release.2.txt") == "txt"
    assert file_format(tmp_path / "README.TXT") == "txt"
