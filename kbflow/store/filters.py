"""Typed row filters, and the one place that turns them into LanceDB (DataFusion SQL) predicates.

Every value reaches a predicate through `_literal`, which quotes it as a SQL string
literal (a quote doubled); nothing else in kbflow writes a predicate by hand. A value
holding quotes, `%`, `OR 1=1` or any other SQL or full-text syntax so matches only
itself: LanceDB's SQL dialect (DataFusion) has no backslash escapes in plain
string literals, and `=`, `IN` and `array_has_any` compare whole values (no LIKE).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

ACL_COLUMN = "acl"  # documents and chunks: who may see them (principal strings)


def _literal(value: str) -> str:
    """`value` as a SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def _literals(values: Iterable[str]) -> str:
    return ", ".join(_literal(value) for value in values)


def _one_of(column: str, values: Sequence[str], negate: bool = False) -> str:
    if not values:
        return "true" if negate else "false"
    return f"{column} {'NOT IN' if negate else 'IN'} ({_literals(values)})"


@dataclass(frozen=True)
class RowFilter:
    """Which rows of `chunks` or `documents` a read sees; every field given must hold (AND).

    `principals`: None reads regardless of ACLs; a tuple keeps the rows whose `acl`
    list shares at least one of them (an empty tuple keeps none). The rest compare
    whole values: `tenant` equal, the sequences membership (`exclude_doc_ids`: not in).
    """

    tenant: str | None = None
    sources: Sequence[str] | None = None
    uris: Sequence[str] | None = None
    doc_ids: Sequence[str] | None = None
    exclude_doc_ids: Sequence[str] | None = None
    chunk_ids: Sequence[str] | None = None
    principals: Sequence[str] | None = None
    run_ids: Sequence[str] | None = None
    status: str | None = None

    def predicate(self) -> str | None:
        """The LanceDB `where` string of this filter, None when it keeps every row."""
        parts = []
        if self.tenant is not None:
            parts.append(f"tenant = {_literal(self.tenant)}")
        if self.status is not None:
            parts.append(f"status = {_literal(self.status)}")
        for column, values in (("source", self.sources), ("uri", self.uris), ("doc_id", self.doc_ids),
                               ("chunk_id", self.chunk_ids), ("run_id", self.run_ids)):
            if values is not None:
                parts.append(_one_of(column, list(values)))
        if self.exclude_doc_ids:
            parts.append(_one_of("doc_id", list(self.exclude_doc_ids), negate=True))
        if self.principals is not None:
            principals = sorted(set(self.principals))
            # array_has_any over a list column: answered by its LABEL_LIST index, inside the scan
            parts.append(f"array_has_any({ACL_COLUMN}, [{_literals(principals)}])" if principals else "false")
        return " AND ".join(f"({part})" for part in parts) if parts else None


def where(row_filter: RowFilter | None) -> str | None:
    """The predicate of an optional filter."""
    return None if row_filter is None else row_filter.predicate()


def cached_vectors_predicate(model: str, text_hashes: Sequence[str]) -> str:
    """The embedding cache's read: rows of `model` whose text hash is one of these."""
    return f"model = {_literal(model)} AND {_one_of('text_hash', list(text_hashes))}"
