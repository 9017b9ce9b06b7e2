"""Quarantine records: what was set aside, where, and why.

Every stage reports bad input the same way, so a run can go on and a user can
see afterwards exactly what was left out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime

import pyarrow as pa

from kbflow.schemas import QUARANTINE


@dataclass(frozen=True)
class Quarantined:
    source: str
    uri: str
    stage: str
    reason: str
    detail: str = ""
    doc_id: str | None = None
    chunk_id: str | None = None
    content_hash: str | None = None


def quarantine_table(records: list[Quarantined], run_id: str) -> pa.Table:
    """The `quarantine` table rows for `records`, stamped with the run."""
    now = datetime.now(UTC)
    rows = [{**asdict(record), "run_id": run_id, "quarantined_at": now} for record in records]
    return pa.Table.from_pylist(rows, schema=QUARANTINE)


def quarantined_from_rows(rows: list[dict]) -> list[Quarantined]:
    """`quarantine` table rows (as `Store.quarantine` returns them) back as records."""
    names = [f.name for f in fields(Quarantined)]
    return [Quarantined(**{name: row[name] for name in names}) for row in rows]


def quarantine_counts(records: list[Quarantined] | list[dict]) -> dict[str, int]:
    """The units of what was set aside: {"documents": documents with a record, "chunks": chunk records}.

    One document whose two chunks failed a check is 1 document and 2 chunks (2 records).
    """
    rows = [asdict(record) if isinstance(record, Quarantined) else record for record in records]
    return {"documents": len({(row["source"], row["uri"]) for row in rows}),
            "chunks": sum(1 for row in rows if row.get("chunk_id"))}


def quarantine_phrase(counts: dict[str, int]) -> str:
    """"1 document (2 chunks)", "3 documents", "none": what `quarantine_counts` counted, units named."""
    documents, chunks = counts.get("documents", 0), counts.get("chunks", 0)
    if not documents and not chunks:
        return "none"
    phrase = f"{documents} document{'s' * (documents != 1)}"
    return f"{phrase} ({chunks} chunk{'s' * (chunks != 1)})" if chunks else phrase
