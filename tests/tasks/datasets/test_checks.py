"""The pair kinds' suites block an anchor found in a negative and navigation-only passages (real GX)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from kbflow.config import DatasetsConfig
from kbflow.errors import QualityGateFailed
from kbflow.schemas import dataset_schema
from kbflow.tasks.datasets.checks import check_rows, dataset_profile
from kbflow.tasks.datasets.snapshot import GROUP, SPLIT, reranker_rows
from kbflow.tasks.datasets.negatives import LexicalScorer

from fakes import WhitespaceTokenizer

ANCHOR = "The archive command copies each finished WAL segment to the archive."
POSITIVE = "Set archive_command so that each finished WAL segment is copied to the archive location."
NEGATIVES = ["VACUUM reclaims storage occupied by dead tuples in tables.",
             "Indexes speed up queries that filter on a few rows of large tables."]


def pairs(**changes: str) -> pa.Table:
    row = {"anchor": ANCHOR, "positive": POSITIVE, "negative_1": NEGATIVES[0], "negative_2": NEGATIVES[1],
           "query_id": "q1", "positive_chunk_id": "c1", "doc_id": "d1", "source": "docs", "generator": "ict",
           SPLIT: "train", GROUP: "d1"} | changes
    schema = pa.schema([*dataset_schema("embedding-pairs", 2), (GROUP, pa.string()), (SPLIT, pa.string())])
    return pa.Table.from_pylist([row], schema=schema)


def check(kind: str, table: pa.Table) -> dict:
    scorer = LexicalScorer([POSITIVE, *NEGATIVES, "Backups run nightly.", "Prev Up Home Next"])
    profile = dataset_profile(kind, table, WhitespaceTokenizer(), DatasetsConfig(), scorer)
    return check_rows(kind, profile, 256, None)


def test_clean_pairs_pass_every_check_of_both_pair_suites():
    summary = check("embedding-pairs", pairs())
    checks = {e["check"] for e in summary["expectations"]}
    assert summary["success"] and {"no_anchor_in_negative", "no_answer_in_negative", "no_navigation_positive",
                                   "no_navigation_negative"} <= checks
    assert check("reranker", reranker_rows(pairs(), 2))["success"]


@pytest.mark.parametrize("kind", ["embedding-pairs", "reranker"])
@pytest.mark.parametrize("changes, failing", [
    ({"negative_2": f"Before anything else. {ANCHOR} Then restart."}, "anchor_in_negative"),
    ({"positive": "Prev\n\nUp\n\nChapter 26. Backup and Restore\n\nHome\n\nNext"}, "positive_is_navigation"),
    ({"negative_1": "Prev Up Home Next"}, "negative_is_navigation"),
    ({"negative_1": "Each finished WAL segment is copied by the archive command to the archive location "
                    "set by archive_command."}, "answer_in_negative"),
])
def test_a_bad_pair_blocks_the_build_naming_the_check(kind, changes, failing):
    table = pairs(**changes)
    with pytest.raises(QualityGateFailed, match=failing):
        check(kind, table if kind == "embedding-pairs" else reranker_rows(table, 2))
