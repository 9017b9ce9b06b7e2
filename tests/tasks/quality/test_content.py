"""Content rules as plain functions: a chunk that is only navigation."""

from __future__ import annotations

import doctest

import pytest

from kbflow.tasks.quality import content
from kbflow.tasks.quality.content import is_navigation_only


@pytest.mark.parametrize("text", [
    "26.3. Continuous Archiving and Point-in-Time Recovery (PITR)\n\nPrev\n\nUp\n\n"
    "Chapter 26. Backup and Restore\n\nHome\n\nNext",  # the DocBook pager, as the PostgreSQL manual's pages give it
    "Prev Up Home Next",
    "Table of Contents\n26.1. SQL Dump\n26.1.1. Restoring the Dump\n26.2. File System Level Backup",
    "- [Install](install.md)\n- [Upgrade](upgrade.md)\n- [FAQ](faq.md)",
    "Home » Guides » Backups",
    "Backup and Restore",  # a lone heading line
])
def test_navigation_only_chunks(text):
    assert is_navigation_only(text)


@pytest.mark.parametrize("text", [
    "",
    "A base backup is taken with pg_basebackup while the server runs.",
    "Prev\nNext\nThe archive command copies each finished WAL segment to the archive.",
    "1. Install the package.\n2. Start the service.",
    "2.1. Run the installer and wait for it to finish.\n2.2. Restart the server.",  # numbered steps, not titles
    "Options\n\n-e --echo\n\nEcho the commands that vacuumdb generates and sends to the server.",
])
def test_content_is_not_navigation(text):
    assert not is_navigation_only(text)


def test_docstring_examples_hold():
    results = doctest.testmod(content)
    assert results.attempted >= 4 and results.failed == 0


def test_repetition_of_a_long_document_is_judged_on_its_first_lines():
    # Issue 26 #9: the n-gram tables of a 30 MB log took gigabytes; a bounded prefix is judged instead.
    from kbflow.tasks.quality import content

    line = "2026-12-07 request {} served from cache node {} in {} ms\n"
    text = "".join(line.format(i, i % 7, i % 13) for i in range(60_000))  # ~3.4 MB
    assert len(text) > 3 * content.REPETITION_MAX_CHARS
    prefix = text[: text.rfind("\n", 0, content.REPETITION_MAX_CHARS) + 1]
    assert content.repetition(text) == content.repetition(prefix)
    assert content.repetition(text)["dup_line_frac"] is not None  # the control: it was judged, not skipped
