from __future__ import annotations

import pyarrow as pa

from kbflow.schemas import PARSED
from kbflow.tasks.index.chunk import chunk_documents, split_section

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
    again = chunk_documents(table, TOKENIZER, 32, 4, min_section_tokens=0)
    first = chunk_documents(table, TOKENIZER, 32, 4, min_section_tokens=0)
    assert first.column("chunk_id").to_pylist() == again.column("chunk_id").to_pylist()
    assert first.column("ordinal").to_pylist() == [0, 1]
    assert first.column("heading").to_pylist() == ["T > A", "T > B"]
    edited = pa.Table.from_pylist([document(text.replace("Second", "Third"), [("A", 0), ("B", 18)])], schema=PARSED)
    changed = chunk_documents(edited, TOKENIZER, 32, 4, min_section_tokens=0).column("chunk_id").to_pylist()
    assert changed[0] == first.column("chunk_id")[0].as_py() and changed[1] != first.column("chunk_id")[1].as_py()


def test_empty_sections_make_no_chunks():
    table = pa.Table.from_pylist([document("Body.", [("Parent", 0), ("Parent > Child", 0)])], schema=PARSED)
    chunks = chunk_documents(table, TOKENIZER, 32, 4)
    assert chunks.column("heading").to_pylist() == ["T > Parent > Child"]


def test_small_sections_are_carried_into_the_next_and_a_small_last_one_joins_the_one_before():
    long_body = " ".join(f"word{i}" for i in range(40))
    text = f"Tiny one.\n\n{long_body}\n\nSee the manual."
    sections = [("Page > Synopsis", 0), ("Page > Description", 11), ("Page > See Also", 11 + len(long_body) + 2)]
    chunks = chunk_documents(pa.Table.from_pylist([document(text, sections)], schema=PARSED), TOKENIZER, 64, 4,
                             min_section_tokens=12)
    assert chunks.column("heading").to_pylist() == ["T > Page"]  # the sections' common path
    (only,) = chunks.column("text").to_pylist()
    assert only.startswith("T > Page\nSynopsis\nTiny one.\n\nDescription\nword0")
    assert only.endswith("word39\n\nSee Also\nSee the manual.")
    alone = chunk_documents(pa.Table.from_pylist([document(text, sections)], schema=PARSED), TOKENIZER, 64, 4,
                            min_section_tokens=0)
    assert alone.num_rows == 3  # 0: every section alone, as before


def test_the_carrying_threshold_is_at_most_half_a_chunk():
    body = " ".join(f"word{i}" for i in range(40))  # ~ 60 tokens: over half of a 64-token chunk
    text = f"{body}\n\n{body}"
    sections = [("Page > One", 0), ("Page > Two", len(body) + 2)]
    table = pa.Table.from_pylist([document(text, sections)], schema=PARSED)
    headings = chunk_documents(table, TOKENIZER, 64, 4, min_section_tokens=128).column("heading").to_pylist()
    assert headings[0] == "T > Page > One" and headings[-1] == "T > Page > Two"  # each section starts its own chunks
    merged = chunk_documents(table, TOKENIZER, 512, 4, min_section_tokens=128).column("heading").to_pylist()
    assert merged == ["T > Page"]  # a 512-token chunk carries a 60-token section: both under their common path


def test_every_heading_path_starts_with_the_document_title():
    text = "DROP ROLE removes a database role. " * 10

    def headings(sections: list[tuple[str, int]], title: str = "DROP ROLE") -> list[str]:
        table = pa.Table.from_pylist([{**document(text, sections), "title": title}], schema=PARSED)
        return chunk_documents(table, TOKENIZER, 128, 4).column("heading").to_pylist()

    assert headings([("Description", 0)]) == ["DROP ROLE > Description"]
    assert headings([("Roles", 0)]) == ["DROP ROLE > Roles"]
    assert headings([("CONFIGURATION", 0)], title="gitweb.conf(5)") == ["gitweb.conf(5) > CONFIGURATION"]
    assert headings([("", 0)]) == ["DROP ROLE"]  # no heading: the title, never an empty one
    # A path that already names the page keeps its own words, not the title twice.
    assert headings([("gitweb.conf(5) Manual Page > NAME", 0)], title="gitweb.conf(5)") == [
        "gitweb.conf(5) Manual Page > NAME"]
    assert headings([("Backup and Restore > 26.3. Archiving", 0)], title="26.3. Archiving") == [
        "Backup and Restore > 26.3. Archiving"]
    assert headings([("Description", 0)], title="") == ["Description"]


def test_a_window_sits_under_the_headings_of_the_sections_it_holds():
    # "Creating tags" is small and carried into "Browsing revisions", which spans several windows:
    # the first window holds both (their common path), the later ones only "Browsing revisions".
    tags = "We can also create a tag."
    browsing = " ".join(f"rev{i}" for i in range(80))
    text = f"{tags}\n\n{browsing}"
    sections = [("Manual > Exploring > Creating tags", 0), ("Manual > Exploring > Browsing revisions", len(tags) + 2)]
    table = pa.Table.from_pylist([{**document(text, sections), "title": "Manual"}], schema=PARSED)
    chunks = chunk_documents(table, TOKENIZER, 40, 4, min_section_tokens=20).to_pylist()
    assert len(chunks) >= 3
    assert chunks[0]["heading"] == "Manual > Exploring"
    assert chunks[0]["text"].startswith("Manual > Exploring\nCreating tags\nWe can also create a tag.\n\n"
                                        "Browsing revisions\nrev0")
    assert all(c["heading"] == "Manual > Exploring > Browsing revisions" for c in chunks[1:])
    for c in chunks:  # the heading a chunk sits under is never one whose text it lacks
        body = c["text"][len(c["heading"]) + 1:]
        assert body.startswith(("Creating tags", "rev")) and c["text"].startswith(c["heading"] + "\n")
        assert ("tag" in body) == c["heading"].endswith("Exploring")


class PieceTokenizer(WhitespaceTokenizer):
    """Words of more than 4 letters are two tokens (a stem and a ##piece), as WordPiece splits rare words."""

    def offsets(self, text: str) -> list[tuple[int, int]]:
        spans = []
        for start, end in super().offsets(text):
            spans += [(start, start + 4), (start + 4, end)] if end - start > 4 else [(start, end)]
        return spans

    def count(self, texts):
        return [len(self.offsets(text)) for text in texts]


def test_a_window_never_starts_inside_a_word():
    body = " ".join(f"alpha{i}" for i in range(60))  # every word is two pieces
    chunks = split_section(body, "", PieceTokenizer(), max_tokens=20, overlap=5)
    assert len(chunks) > 2
    assert all(text.split()[0].startswith("alpha") for text, _ in chunks)  # "a0" or "ha12": a cut word


class WidestTokenizer(WhitespaceTokenizer):
    """Remembers the longest text it was asked to tokenize: what a document costs in memory at once."""

    def __init__(self) -> None:
        self.widest = 0

    def offsets(self, text: str) -> list[tuple[int, int]]:
        self.widest = max(self.widest, len(text))
        return super().offsets(text)

    def count(self, texts):
        self.widest = max(self.widest, *map(len, texts))
        return super().count(texts)


def test_a_large_document_is_tokenized_a_block_at_a_time_with_the_same_windows(monkeypatch):
    # Issue 26 #9: a 30 MB log was tokenized whole (~6 GB of offsets); now a block at a time.
    from kbflow import progress
    from kbflow.tasks.index import chunk as chunking

    lines = [f"2026-12-07 ERROR request {i} timed out after {i % 97} ms on node{i % 7}" for i in range(12_000)]
    text = "\n".join(lines)  # ~0.75 MB, one section
    table = pa.Table.from_pylist([document(text, [("", 0)])], schema=PARSED)
    reports = []
    progress.listen(lambda stage, done, total: reports.append((stage, done, total)))
    try:
        tokenizer = WidestTokenizer()
        streamed = chunk_documents(table, tokenizer, 64, 8)
    finally:
        progress.listen(None)
    block = getattr(chunking, "TOKENIZE_CHARS", 100_000)
    assert len(text) > 5 * block
    assert 0 < tokenizer.widest <= block  # never the whole document at once
    moving = [done for stage, done, total in reports if stage == "chunk (characters)" and 0 < done < total]
    assert len(moving) >= 5 and moving == sorted(moving)  # progress moves inside the one document
    monkeypatch.setattr(chunking, "TOKENIZE_CHARS", 10 * len(text))  # the whole body in one block
    whole = chunk_documents(table, WhitespaceTokenizer(), 64, 8)
    assert streamed.column("text").to_pylist() == whole.column("text").to_pylist()
    assert streamed.num_rows > 500
