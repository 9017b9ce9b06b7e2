"""What a hard negative must not be: the anchor, another answer, navigation."""

from __future__ import annotations

import doctest
import math

import pytest

from kbflow.tasks.datasets import negatives
from kbflow.tasks.datasets.negatives import LexicalScorer, contains_anchor, negative_problem

ANCHOR = "The archive command copies each finished WAL segment to the archive."


@pytest.mark.parametrize("text", [
    f"Setup comes first. {ANCHOR} Then the server starts.",
    "setup. THE ARCHIVE COMMAND copies each finished WAL-segment to the archive!",  # case, punctuation
    "The archive command copies every finished WAL segment to the archive.",  # one word changed
])
def test_the_anchor_verbatim_or_nearly_is_found(text):
    assert contains_anchor(ANCHOR, text)


@pytest.mark.parametrize("text", [
    "The archive holds WAL segments; a command copies them.",
    "Each finished segment is removed.",
])
def test_other_texts_do_not_hold_the_anchor(text):
    assert not contains_anchor(ANCHOR, text)


CORPUS = [
    "pg_basebackup takes a base backup of a running cluster.",
    "VACUUM reclaims storage occupied by dead tuples.",
    "The archive_command copies a finished WAL segment.",
    "Indexes speed up queries on large tables.",
    "ANALYZE collects statistics about the contents of tables.",
    "How does replication work, and how does it fail over?",
]


def test_bm25_rewards_rare_shared_terms_and_the_ratio_compares_with_the_positive():
    scorer = LexicalScorer(CORPUS)
    query = "How does pg_basebackup take a base backup?"
    assert scorer.score(query, CORPUS[0]) > scorer.score(query, CORPUS[1]) == 0
    assert scorer.idf("pg_basebackup") > scorer.idf("tables")
    assert scorer.ratio(query, CORPUS[1], CORPUS[0]) == 0
    assert scorer.ratio(query, CORPUS[0], CORPUS[0]) == pytest.approx(1.0)
    assert scorer.ratio(query, CORPUS[0], CORPUS[1]) == math.inf  # the positive matches nothing, the negative does


def test_negative_problem_names_the_first_reason_that_applies():
    scorer = LexicalScorer(CORPUS)
    positive = "Run pg_basebackup against the primary to take a base backup while it runs."
    question = "How does pg_basebackup take a base backup?"
    assert negative_problem(question, positive, "Prev Up Home Next", scorer, 1.0) == "negative_navigation"
    assert negative_problem(ANCHOR, positive, f"Before. {ANCHOR}", scorer, 1.0) == "negative_with_anchor"
    # Holds the question's rare terms as fully as the positive: likely another right answer.
    answer = "pg_basebackup takes a base backup of a running cluster; take one before upgrading."
    assert negative_problem(question, positive, answer, scorer, 1.0) == "negative_with_answer"
    assert negative_problem(question, positive, CORPUS[1] + " It runs often.", scorer, 1.0) is None


def test_a_few_shared_words_with_a_weak_positive_do_not_make_an_answer():
    # An inverse-cloze positive (its sentence taken out) shares few words with the anchor: a negative
    # that shares a few more is still a good hard negative, not another answer.
    scorer = LexicalScorer(CORPUS)
    anchor = "Optimization of queries is primitive and mostly left to the wrapper."
    positive = "Foreign-data functionality is still under active development."
    negative = "Indexes speed up queries on large tables; the planner is left to choose."
    assert scorer.ratio(anchor, negative, positive) > 1
    assert negative_problem(anchor, positive, negative, scorer, 1.0) is None


def test_docstring_examples_hold():
    results = doctest.testmod(negatives)
    assert results.attempted >= 2 and results.failed == 0


def test_a_negative_that_copies_the_positives_text_is_rejected():
    # The same option text copied into two man pages: another page's chunk is no negative of this one.
    scorer = LexicalScorer(CORPUS)
    option = ("--thin: create a thin pack, which records objects in deltified form based on objects "
              "not included in the pack, to reduce network traffic when the other side already has them.")
    positive = f"git-push(1) > OPTIONS\n{option}\n--all: push all branches."
    negative = f"git-fetch-pack(1) > OPTIONS\n--depth: limit fetching to the given depth.\n{option}"
    question = "What does the --all option of git-push do?"
    assert negative_problem(question, positive, "--depth: limit fetching to the given depth.", scorer, 1.0) is None
    assert negative_problem(question, positive, negative, scorer, 1.0) == "negative_copies_positive"
