"""The record of one flow run: counts, stage durations, data-quality outcome.

Used as a context manager around a flow's body, so that a run is recorded in
the `runs` table (and its quarantine records kept) however it ends: published,
with nothing to do, blocked by a quality gate, refused before it started (a
model mismatch), or failed. A run that ends without publishing records the
index's chunk total as it stands, not 0.

A run that is about to publish writes its record first, as `running` (`before_publish`), and
replaces it when it ends: every published table version has its run in `runs`, even when the
process is killed (`kill -9`) between the publish and the end of the run, which then stays
`running` there, traceable (`kbflow trace` finds it).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from kbflow import __version__
from kbflow.errors import QualityGateFailed, RunRefused
from kbflow.quarantine import Quarantined, quarantine_counts, quarantine_table
from kbflow.store import CHUNKS, Store, new_run_id


@dataclass
class RunRecord:
    store: Store
    flow: str
    source: str | None
    model: str
    run_id: str = field(default_factory=new_run_id)
    status: str = "running"
    documents: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("new", "changed", "unchanged", "deleted", "quarantined", "acl_changed"), 0)
    )
    chunks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("embedded", "reused", "deleted", "total"), 0))
    stage_durations: dict[str, float] = field(default_factory=dict)
    quarantined: list[Quarantined] = field(default_factory=list)
    dq_success: bool | None = None  # every expectation passed; None: no check ran (set by the QualityGate)
    dq_failures: list[dict[str, Any]] = field(default_factory=list)  # the blocking ones
    quality_results: str | None = None  # path of the run's quality summary JSON
    parent_run_id: str | None = None  # rollback: the run whose state was restored
    versions: dict[str, int | None] = field(default_factory=lambda: {"chunks": None, "documents": None})
    error: str | None = None
    warnings: list[str] = field(default_factory=list)  # what a user should know though the run went on
    promotion: dict[str, Any] | None = None  # reindex: the queries' MRR@10 before and after, and the decision
    # exact duplicates indexed once: {"source", "uri", "same_as"} (documents["duplicate"] counts them)
    duplicates: list[dict[str, str]] = field(default_factory=list)
    _started: float = field(default_factory=time.perf_counter)
    _started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    _lap: float = field(default_factory=time.perf_counter)

    def lap(self, stage: str) -> None:
        """Close the current stage: the time since the previous lap is charged to it."""
        now = time.perf_counter()
        self.stage_durations[stage] = round(self.stage_durations.get(stage, 0.0) + now - self._lap, 4)
        self._lap = now

    def quarantine(self, records: list[Quarantined]) -> set[str]:
        """Keep records for the run; return the doc_ids they name."""
        self.quarantined.extend(records)
        return {record.doc_id for record in records if record.doc_id}

    def set_aside_whole(self, items: pa.Table, doc_ids: set[str]) -> None:
        """Of `items` (to parse, with their `change`), those of `doc_ids` were set aside whole: they
        count in `quarantined` only, not as `new` or `changed`, as an item set aside by discovery
        (a sql row without text, a file over the size limit) never counted there."""
        set_aside = pc.is_in(items.column("doc_id"), value_set=pa.array(sorted(doc_ids), pa.string()))
        for change in items.column("change").filter(set_aside).to_pylist():
            if change in ("new", "changed"):  # not "boilerplate": an unchanged document parsed again
                self.documents[change] -= 1

    @property
    def duration_s(self) -> float:
        return round(time.perf_counter() - self._started, 3)

    def report(self) -> dict[str, Any]:
        """The run as the CLI's `ingest --json` prints it."""
        self.documents["quarantined"] = len({(q.source, q.uri) for q in self.quarantined})
        return {
            "run_id": self.run_id,
            "status": self.status,
            "documents": dict(self.documents),
            "chunks": dict(self.chunks),
            "duration_s": self.duration_s,
            # documents.quarantined counts documents; this names both units (1 document, 2 of its chunks)
            "quarantined": quarantine_counts(self.quarantined),
            **({"warnings": list(self.warnings)} if self.warnings else {}),
            **({"promotion": self.promotion} if self.promotion else {}),
            **({"duplicates": list(self.duplicates)} if self.duplicates else {}),
        }

    def set_aside_duplicates(self, duplicates: list[tuple[str, str, str]]) -> None:
        """Count and list the exact duplicates discovery set aside (each indexed once, as `same_as`);
        the `duplicate` count appears in `documents` only when there are some."""
        self.duplicates = [{"source": source, "uri": uri, "same_as": kept} for source, uri, kept in duplicates]
        if duplicates:
            self.documents["duplicate"] = len(duplicates)

    def __enter__(self) -> RunRecord:
        return self

    def before_publish(self) -> None:
        """Write the run as `running` before it publishes (replaced by its final record when it ends)."""
        self.store.add_run(self._row(self.duration_s, status="running"))

    def _row(self, duration_s: float, status: str | None = None) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "flow": self.flow,
            "source": self.source,
            "status": status or self.status,
            "started_at": self._started_at,
            "duration_s": duration_s,
            "stage_durations": self.stage_durations,
            "documents": self.documents,
            "chunks": self.chunks,
            "dq_success": False if self.dq_failures else self.dq_success,
            "dq_failures": self.dq_failures,
            "error": self.error,
            "quality_results": self.quality_results,
            "chunks_version": self.versions["chunks"],
            "documents_version": self.versions["documents"],
            "model": self.model,
            "kbflow_version": __version__,
            "prefect_flow_run_id": _prefect_flow_run_id(),
            "parent_run_id": self.parent_run_id,
            "warnings": self.warnings,
            "promotion": self.promotion,
        }

    def __exit__(self, kind, error, traceback) -> None:
        if isinstance(error, QualityGateFailed):
            self.status = "blocked"
            self.dq_failures = error.failure_dicts()
        elif isinstance(error, RunRefused):
            self.status, self.error, self.dq_success = "refused", str(error)[:4000], None
        elif error is not None:
            self.status, self.error = "failed", f"{type(error).__name__}: {error}"[:4000]
        if error is not None:  # nothing (or not all) was published: the index's total is what holds
            self.chunks["total"] = self.store.count(CHUNKS)
        report = self.report()
        self.store.add_quarantine(quarantine_table(self.quarantined, self.run_id))
        self.store.add_run(self._row(report["duration_s"]))
        if isinstance(error, QualityGateFailed):
            error.report = report


def _prefect_flow_run_id() -> str | None:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return str(context.flow_run.id) if context and context.flow_run else None


RUN_JSON_FIELDS = ("stage_durations", "documents", "chunks", "dq_failures", "warnings", "promotion")


def promotion_line(promotion: dict[str, Any]) -> str:
    """One line for a person: the decision and the numbers behind it."""
    if promotion.get("decision") == "unchecked":
        return f"promotion not checked: {promotion.get('reason', '')}"
    return (f"{promotion['decision']}: {promotion['metric'].upper()} {promotion['before']:.3f} -> "
            f"{promotion['after']:.3f} ({100 * promotion['change']:+.1f} points; at most "
            f"{100 * promotion['max_drop']:.1f} may be lost) on {promotion.get('n', '?')} queries of "
            f"{Path(promotion.get('queries', '')).name}, {promotion.get('mode')} search")


def decoded_run(run: dict[str, Any]) -> dict[str, Any]:
    """A `runs` row with its JSON columns (counts, stage durations, failures) decoded, and its `dq_outcome`."""
    decoded = {k: (json.loads(v) if k in RUN_JSON_FIELDS and v else v) for k, v in run.items()}
    return {**decoded, "dq_outcome": dq_outcome(decoded)}


def dq_outcome(run: dict[str, Any]) -> str | None:
    """What the checks did to a (decoded) run: "passed"; "set_aside" (rows failed row-level checks and
    were quarantined, the rest went on: a published run); "blocked" (nothing published); None: no check ran.

    `dq_success` alone is False for both of the last two: a run that set one chunk aside is not blocked.
    """
    if run.get("dq_failures") or run.get("status") == "blocked":
        return "blocked"
    if run.get("dq_success") is None:
        return None
    return "passed" if run["dq_success"] else "set_aside"


def quality_summary(run: dict[str, Any]) -> dict[str, Any]:
    """The run's data-quality summary (every suite and expectation); no suites and success
    None if nothing was checked."""
    path = run.get("quality_results")
    if not path or not Path(path).is_file():
        return {"run_id": run["run_id"], "success": run.get("dq_success"), "suites": []}
    # A reindex keeps its staging ingest's results file: they are this run's checks, shown under its id.
    return {**json.loads(Path(path).read_text(encoding="utf-8")), "run_id": run["run_id"]}
