"""Headings become questions a user would ask; structural headings and non-prose sentences are skipped."""

from __future__ import annotations

import doctest

import pytest

from kbflow.tasks.datasets import questions
from kbflow.tasks.datasets.questions import heading_question, is_informative_sentence, strip_numbering


@pytest.mark.parametrize("heading, title, expected", [
    ("26.3. Continuous Archiving and Point-in-Time Recovery (PITR)", "", "What is continuous archiving and "
     "point-in-time recovery (PITR)?"),
    ("42.1. Installing Procedural Languages", "", "How do I install procedural languages?"),
    ("Logging Cookbook > Logging from multiple threads", "", "How do I log from multiple threads?"),
    ("vacuumdb > Options > -f --full", "", "What does the -f (--full) option of vacuumdb do?"),
    ("Description", "ALTER POLICY", "What does ALTER POLICY do?"),
    ("Options", "pg_dump", "What options does pg_dump accept?"),
    ("CHECKPOINT", "CHECKPOINT", "What does CHECKPOINT do?"),
    ("Python Initialization Configuration > Py_RunMain()", "", "What does Py_RunMain() do?"),
    (":mod:`json` --- JSON encoder and decoder", "", "What is json used for?"),
    ("9.12. Network Address Functions and Operators", "", "What are network address functions and operators?"),
    ("38.2. The PostgreSQL Type System", "", "What is the PostgreSQL type system?"),
    ("17.7. Platform-Specific Notes", "", "What are platform-specific notes?"),
    ("11.2. Index Types > 11.2.6. BRIN", "", "What is BRIN in index types?"),  # the parent as a phrase
    ("Data Structures > Dictionaries", "", "What are dictionaries in data structures?"),  # was "What is"
    ("Why doesn't closing sys.stdout really close it?", "", "Why doesn't closing sys.stdout really close it?"),
    # -ing words spelling rules broke ("complet", "ad", "rebas", "stag") and ones they got right
    ("Completing a review", "", "How do I complete a review?"),
    ("Adding a remote", "", "How do I add a remote?"),
    ("Rebasing a topic branch", "", "How do I rebase a topic branch?"),
    ("Staging changes", "", "How do I stage changes?"),
    ("Editing commit messages", "", "How do I edit commit messages?"),
    ("Setting up a repository", "", "How do I set up a repository?"),
    ("Syncing repositories", "", "How do I sync repositories?"),  # words the lexicon lacks: its guess, checked
    ("Rebasing merges", "", "How do I rebase merges?"),
])
def test_headings_become_questions_by_their_shape(heading, title, expected):
    assert heading_question(heading, title) == expected


@pytest.mark.parametrize("heading", [
    "Part III. Server Administration", "Chapter 26. Backup and Restore", "Appendix M. Glossary",
    "Synopsis", "See Also", "Note", "Examples",
    "What's New In Python 3.10 > Improved Modules > glob", "E.1. Release 15.5",
])
def test_structural_headings_and_release_notes_give_no_question(heading):
    assert heading_question(heading, title=heading) is None


def test_an_admonition_label_in_an_old_heading_path_is_not_the_topic():
    assert heading_question("20.8. Error Reporting and Logging > Tip") == "What is error reporting and logging?"


def test_section_numbers_are_stripped_but_words_are_kept():
    assert strip_numbering("F.2.1. Functions") == "Functions"
    assert strip_numbering("See Also") == "See Also"
    assert strip_numbering("2.8. Updates") == "Updates"


@pytest.mark.parametrize("sentence, informative", [
    ("A base backup can be taken with pg_basebackup while the server runs.", True),
    ("The planner uses statistics to choose the cheapest plan for each query.", True),
    ("SELECT * FROM t WHERE x = 1;", False),
    ("and the rest of the options.", False),
    ("Use `pip install` to get it.", False),
    ("See Section 26.3.", False),
    ("See also Section 9.23 for other expressions involving subqueries.", False),  # a pointer, not a topic
    ("For more information on the options, see the psql reference page.", False),
    ("Prev Up Home Next", False),
    ("max_wal_size = 1GB, min_wal_size = 80MB, wal_level = replica.", False),
    ("However, we use the term method only for methods of class instances, unless stated otherwise.)", False),
])
def test_only_whole_informative_prose_sentences_are_queries(sentence, informative):
    assert is_informative_sentence(sentence) is informative


def test_docstring_examples_hold():
    results = doctest.testmod(questions)
    assert results.attempted >= 5 and results.failed == 0
