"""Dedup: exact and near duplicates dropped (first kept), different texts kept, splits do not leak."""

from __future__ import annotations

import pyarrow as pa
import pytest

from kbflow.tasks.datasets.dedup import cross_group_near_duplicates, drop_duplicates, normalize_text

SENTENCE = (
    "To restore a backup stop the server first then copy the archive into the data directory "
    "and start the server again with the recovery flag set before the clients connect"
)
assert len(SENTENCE.split()) == 30
# One word changed mid-sentence changes 3 of 28 shingles: Jaccard 25/31 = 0.806, just above 0.8.
EDITED = SENTENCE.replace("archive into", "snapshot into")
OTHER = (
    "The scheduler runs the ingest flow every night at two and sends a summary of new changed and "
    "deleted documents to the team channel together with the data quality results of the run"
)


def test_normalize_text():
    assert normalize_text("  Reset  the PASSWORD,\n then log-in!") == "reset the password then log in"
    assert normalize_text("ＡＢＣ") == "abc"  # NFKC: full-width letters


def test_exact_duplicates_after_normalisation_keep_the_first():
    table = pa.table({"text": ["Hello, World!", "hello world", "HELLO   WORLD.", "Goodbye"], "id": [1, 2, 3, 4]})
    kept, counts = drop_duplicates(table, "text", threshold=0.8, seed=1)
    assert kept.column("id").to_pylist() == [1, 4]
    assert counts == {"exact": 2, "near": 0}


def test_one_word_edit_of_a_long_sentence_is_a_near_duplicate():
    table = pa.table({"text": [SENTENCE, OTHER, EDITED], "id": [1, 2, 3]})
    kept, counts = drop_duplicates(table, "text", threshold=0.8, seed=42)
    assert kept.column("id").to_pylist() == [1, 2]
    assert counts == {"exact": 0, "near": 1}


@pytest.mark.parametrize("seed", [0, 1, 42, 1234])
def test_near_duplicate_found_whatever_the_seed(seed):
    # The LSH is tuned for recall at the threshold; exact Jaccard decides.
    table = pa.table({"text": [SENTENCE, EDITED]})
    assert drop_duplicates(table, "text", threshold=0.8, seed=seed)[1] == {"exact": 0, "near": 1}


def test_different_texts_are_kept():
    texts = [SENTENCE, OTHER, "How do I reset my password?", "How do I rotate my API key?", "", "a b"]
    kept, counts = drop_duplicates(pa.table({"text": texts}), "text", threshold=0.8, seed=42)
    assert kept.column("text").to_pylist() == texts
    assert counts == {"exact": 0, "near": 0}


def test_short_texts_compare_words():
    # Under three words there are no 3-shingles: the words themselves are compared.
    kept, counts = drop_duplicates(pa.table({"text": ["reset password", "password reset", "reset email"]}), "text", 0.8, 42)
    assert kept.column("text").to_pylist() == ["reset password", "reset email"]
    assert counts == {"exact": 0, "near": 1}


def test_messages_column_is_compared_by_its_contents():
    messages = pa.array(
        [
            [{"role": "user", "content": "Restore?"}, {"role": "assistant", "content": SENTENCE}],
            [{"role": "user", "content": "Restore!"}, {"role": "assistant", "content": SENTENCE}],
            [{"role": "user", "content": "Schedule?"}, {"role": "assistant", "content": OTHER}],
        ],
        type=pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])),
    )
    kept, counts = drop_duplicates(pa.table({"messages": messages}), "messages", 0.8, 42)
    assert kept.num_rows == 2 and counts == {"exact": 1, "near": 0}


def test_cross_group_marks_only_rows_of_later_groups():
    texts = [EDITED, SENTENCE, OTHER, SENTENCE, OTHER, "a new question about tenants"]
    groups = ["test", "train", "validation", "train", "test", "validation"]
    marked = cross_group_near_duplicates(texts, groups, threshold=0.8, seed=42)
    # test's EDITED near-duplicates train; test's OTHER duplicates validation; train's repeat is train's own business.
    assert marked == [True, False, False, False, True, False]


def test_cross_group_marked_rows_do_not_mark_others():
    # validation's copy is marked (and will be dropped); a test row like it still matches train's original.
    texts = [SENTENCE, EDITED, EDITED]
    assert cross_group_near_duplicates(texts, ["train", "validation", "test"], 0.8, 42) == [False, True, True]
    # Without a train original, validation keeps its row and test's copy is marked against it.
    assert cross_group_near_duplicates([EDITED, EDITED], ["validation", "test"], 0.8, 42) == [False, True]


def test_deterministic_with_a_seed():
    texts = [f"{SENTENCE} {i % 7}" for i in range(40)] + [f"{OTHER} variant {i}" for i in range(40)]
    table = pa.table({"text": texts})
    first = drop_duplicates(table, "text", 0.8, seed=7)
    second = drop_duplicates(table, "text", 0.8, seed=7)
    assert first[0].equals(second[0]) and first[1] == second[1]
    groups = ["train", "validation", "test", "train"] * 20
    assert cross_group_near_duplicates(texts, groups, 0.8, 7) == cross_group_near_duplicates(texts, groups, 0.8, 7)


def test_bad_arguments():
    with pytest.raises(ValueError, match="threshold"):
        drop_duplicates(pa.table({"text": ["a"]}), "text", threshold=0, seed=1)
    with pytest.raises(ValueError, match="groups"):
        cross_group_near_duplicates(["a", "b"], ["train"], 0.8, 1)
