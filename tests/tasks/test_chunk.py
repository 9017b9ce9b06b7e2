from __future__ import annotations

import pyarrow as pa

from kbflow.schemas import PARSED
from kbflow.tasks.chunk import chunk_documents, split_section

from fakes import WhitespaceTokenizer

TOKENIZER = WhitespaceTokenizer()


def document(text: str, sections: list[tuple[str, int]], doc_id: str = "d1") -> dict:
    return {"doc_id": doc_id, "source": "s", "tenant": "t", "uri": "u.md", "format": "md", "content_hash": "h",
            "size": len(text), "title": "T", "text": text, "metadata": "{}",
            "sections": [{"heading": h, "start": s} for h, s in sections]}


def test_short_section_is_one_chunk_with_its_heading_line():
    assert split_section("Run the installer.", "Guide > Install", TOKENIZER, 32, 4) == [
        ("Guide > Install\nRun the installer.", 8)
    ]


def test_long_section_is_split_into_overlapping_windows_within_the_limit():
    body = " ".join(f"w{i}" for i in range(100))
    chunks = split_section(body, "H", TOKENIZER, max_tokens=20, overlap=5)
    assert all(n <= 20 for _, n in chunks)
    assert [n for _, n in chunks] == TOKENIZER.count([text for text, _ in chunks])
    words = [text.split("\n", 1)[1].split() for text, _ in chunks]
    assert words[0][0] == "w0" and words[-1][-1] == "w99"
    for before, after in zip(words, words[1:]):
        assert before[-5:] == after[:5]  # 5 tokens of overlap


def test_windows_prefer_to_end_at_a_paragraph_break():
    first = " ".join(f"a{i}" for i in range(12))
    body = first + "\n\n" + " ".join(f"b{i}" for i in range(12))
    chunks = split_section(body, "", TOKENIZER, max_tokens=18, overlap=0)
    assert chunks[0][0] == first


def test_a_very_long_single_line_never_exceeds_the_limit():
    body = "x" * 10 + " " + " ".join(["token"] * 5000)
    chunks = split_section(body, "", TOKENIZER, max_tokens=64, overlap=8)
    assert len(chunks) > 70 and max(n for _, n in chunks) <= 64


def test_chunk_ids_are_stable_for_unchanged_text_and_change_with_it():
    text = "Intro text here.\n\nSecond section body."
    table = pa.Table.from_pylist([document(text, [("A", 0), ("B", 18)])], schema=PARSED)
    again = chunk_documents(table, TOKENIZER, 32, 4)
    first = chunk_documents(table, TOKENIZER, 32, 4)
    assert first.column("chunk_id").to_pylist() == again.column("chunk_id").to_pylist()
    assert first.column("ordinal").to_pylist() == [0, 1]
    assert first.column("heading").to_pylist() == ["A", "B"]
    edited = pa.Table.from_pylist([document(text.replace("Second", "Third"), [("A", 0), ("B", 18)])], schema=PARSED)
    changed = chunk_documents(edited, TOKENIZER, 32, 4).column("chunk_id").to_pylist()
    assert changed[0] == first.column("chunk_id")[0].as_py() and changed[1] != first.column("chunk_id")[1].as_py()


def test_empty_sections_make_no_chunks():
    table = pa.Table.from_pylist([document("Body.", [("Parent", 0), ("Parent > Child", 0)])], schema=PARSED)
    chunks = chunk_documents(table, TOKENIZER, 32, 4)
    assert chunks.column("heading").to_pylist() == ["Parent > Child"]
