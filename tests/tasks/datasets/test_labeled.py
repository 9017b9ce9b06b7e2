"""Labeled records: the documents a record names as relevant."""

from __future__ import annotations

import pyarrow as pa

from kbflow.tasks.datasets.labeled import relevant_lookup, resolve_relevant


def test_resolve_relevant_matches_doc_id_uri_source_path_and_file_name():
    documents = pa.table({
        "doc_id": ["a", "b", "c"],
        "source": ["docs", "docs", "support"],
        "uri": ["manual/backup.md", "faq/general.txt", "answers.jsonl#sa-1"],
    })
    lookup = relevant_lookup(documents)
    assert resolve_relevant(["manual/backup.md"], lookup) == ["a"]
    assert resolve_relevant(["backup.md", "docs/faq/general.txt"], lookup) == ["a", "b"]
    assert resolve_relevant(["c", "answers.jsonl"], lookup) == ["c"]  # a records file is not one document
    assert resolve_relevant(["missing.md"], lookup) == []
