"""Quality: run a stage's Great Expectations suite, apply its policy, keep the results.

Suites are GX 1.x JSON files in expectations/ (or `quality.expectations_dir`),
loaded at every run so users edit checks without code. Each expectation's
`meta.on_failure` says what a failure does:
- "quarantine": the failing rows are set aside with the expectation as reason,
  and the run goes on with the rest;
- "block": nothing is published and the store stays exactly as it was.
Thresholds come from config as GX expectation parameters (`{"$PARAMETER": "max_tokens"}`).

A `QualityGate` lives for one run: it validates through a GX file context in
`quality.results_dir` (so GX keeps every validation result and renders Data
Docs), and when the run ends it writes the run's summary JSON, rebuilds the Data
Docs and publishes Prefect artifacts. GX is imported lazily: it takes seconds.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow.config import QualityConfig
from kbflow.errors import QualityGateFailed
from kbflow.quarantine import Quarantined
from kbflow.tasks.data_docs import make_site_offline
from kbflow.tasks.discover import ChangeSet

EXAMPLES_PER_EXPECTATION = 5
PLAIN_TEXT_FORMATS = {"txt", "md", "markdown", "rst"}  # where text/bytes means something
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


@dataclass
class ExpectationOutcome:
    suite: str
    type: str
    column: str | None
    success: bool
    on_failure: str  # "quarantine" | "block"
    observed: Any = None
    unexpected_count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)  # offending rows: id, uri, value
    unexpected_rows: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "column": self.column,
            "success": self.success,
            "on_failure": self.on_failure,
            "observed": self.observed,
            "unexpected_count": self.unexpected_count,
            "examples": self.examples,
        }


@dataclass
class SuiteResult:
    name: str
    expectations: list[ExpectationOutcome]
    duration_s: float = 0.0

    @property
    def success(self) -> bool:
        return all(outcome.success for outcome in self.expectations)

    @property
    def blocking_failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.expectations if not o.success and o.on_failure == "block"]

    def failed_rows(self) -> dict[int, list[ExpectationOutcome]]:
        """Row position -> the quarantining expectations it failed."""
        rows: dict[int, list[ExpectationOutcome]] = {}
        for outcome in self.expectations:
            if outcome.on_failure == "quarantine":
                for row in outcome.unexpected_rows:
                    rows.setdefault(row, []).append(outcome)
        return rows

    def as_dict(self) -> dict[str, Any]:
        """Failures first, as `kbflow quality --json` prints them."""
        ordered = sorted(self.expectations, key=lambda o: o.success)
        return {"name": self.name, "success": self.success, "expectations": [o.as_dict() for o in ordered]}


def merge_results(results: list[SuiteResult]) -> list[SuiteResult]:
    """One result per suite, in first-run order: the per-batch validations of a run added up.

    An expectation passes if it passed in every batch; unexpected counts add up;
    examples are the first ones; the observed value is the first failing batch's
    (else the first batch's). Checks that need the whole run at once are the `run` suite's.
    """
    merged: dict[str, SuiteResult] = {}
    for result in results:
        if result.name not in merged:
            merged[result.name] = SuiteResult(
                result.name, [replace(o, examples=list(o.examples), unexpected_rows=[]) for o in result.expectations],
                result.duration_s,
            )
            continue
        into = merged[result.name]
        into.duration_s = round(into.duration_s + result.duration_s, 4)
        for total, outcome in zip(into.expectations, result.expectations):
            if total.success and not outcome.success:
                total.observed = outcome.observed
            total.success = total.success and outcome.success
            total.unexpected_count += outcome.unexpected_count
            total.examples = (total.examples + outcome.examples)[:EXAMPLES_PER_EXPECTATION]
    return list(merged.values())


def bundled_expectations_dir() -> Path:
    return Path(str(resources.files("kbflow.expectations")))


def load_suite(name: str, expectations_dir: Path | None = None) -> dict[str, Any]:
    path = (expectations_dir or bundled_expectations_dir()) / f"{name}.json"
    try:
        suite = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot load expectation suite {path}: {error}") from error
    for expectation in suite.get("expectations", []):
        policy = expectation.get("meta", {}).get("on_failure")
        if policy not in {"quarantine", "block"}:
            raise ValueError(
                f"{path}: expectation {expectation.get('type')} needs meta.on_failure "
                f"= \"quarantine\" or \"block\" (got {policy!r})"
            )
    return suite


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (dict, list, str, int, float, bool)) or value is None:
        return value
    return str(value)


def _quiet_gx() -> None:
    # GX sets INFO on some of its loggers at import ("Created temporary directory ...").
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("great_expectations"):
            logging.getLogger(name).setLevel(logging.WARNING)


def open_context(results_dir: Path | None):
    """A GX file context in results_dir (keeps results, builds Data Docs), or an ephemeral one."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    _quiet_gx()
    if results_dir is None:
        context = gx.get_context(mode="ephemeral")
    else:
        results_dir.mkdir(parents=True, exist_ok=True)
        context = gx.get_context(mode="file", project_root_dir=str(results_dir))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def validate_frame(
    context, suite: dict[str, Any], frame: pd.DataFrame, parameters: dict[str, Any], run_id: str | None = None
) -> SuiteResult:
    """Run one GX suite over a whole dataframe as a checkpoint (GX stores the result)."""
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    started = time.perf_counter()
    name = suite["name"]
    gx_suite = context.suites.add_or_update(gx.ExpectationSuite(**suite))
    data_source = context.data_sources.add_or_update_pandas("kbflow")
    asset = next((a for a in data_source.assets if a.name == name), None) or data_source.add_dataframe_asset(name)
    batch = next((b for b in asset.batch_definitions if b.name == "run"), None) or (
        asset.add_batch_definition_whole_dataframe("run")
    )
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=name, data=batch, suite=gx_suite)
    )
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=f"kbflow-{name}",
            validation_definitions=[definition],
            result_format={"result_format": "COMPLETE", "partial_unexpected_count": EXAMPLES_PER_EXPECTATION},
        )
    )
    frame = frame.reset_index(drop=True)
    result = checkpoint.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters=parameters,
        run_id=RunIdentifier(run_name=run_id) if run_id else None,
    )
    (validation,) = result.run_results.values()
    outcomes = [_outcome(name, item, frame) for item in validation.results]
    return SuiteResult(name, outcomes, duration_s=round(time.perf_counter() - started, 4))


def _outcome(suite: str, item, frame: pd.DataFrame) -> ExpectationOutcome:
    config, details = item.expectation_config, item.result or {}
    column = config.kwargs.get("column")
    rows = [int(i) for i in (details.get("unexpected_index_list") or [])]
    id_column = next((c for c in ("chunk_id", "doc_id", "source") if c in frame.columns), None)
    examples = [
        {
            "id": _jsonable(frame.at[row, id_column]) if id_column else None,
            "uri": _jsonable(frame.at[row, "uri"]) if "uri" in frame.columns else None,
            "value": _jsonable(frame.at[row, column]) if column in frame.columns else None,
        }
        for row in rows[:EXAMPLES_PER_EXPECTATION]
    ]
    return ExpectationOutcome(
        suite=suite,
        type=config.type,
        column=column,
        success=bool(item.success),
        on_failure=config.meta.get("on_failure", "block"),
        observed=_jsonable(details.get("observed_value")),
        unexpected_count=int(details.get("unexpected_count") or 0),
        examples=examples,
        unexpected_rows=rows,
    )


# -- profiles: the columns each suite checks, derived from a stage's table ---------------------


def _language(text: str) -> str:
    import py3langid

    return py3langid.classify(text[:2000])[0]


def documents_profile(documents: pa.Table, check_language: bool = False) -> pd.DataFrame:
    texts = documents.column("text").to_pylist()
    formats = documents.column("format").to_pylist()
    sizes = documents.column("size").to_pylist()
    n_chars = [len(text.strip()) for text in texts]
    return pd.DataFrame(
        {
            "doc_id": documents.column("doc_id").to_pylist(),
            "source": documents.column("source").to_pylist(),
            "uri": documents.column("uri").to_pylist(),
            "n_chars": n_chars,
            "text_to_bytes": [
                n / size if fmt in PLAIN_TEXT_FORMATS and size else None
                for n, fmt, size in zip(n_chars, formats, sizes)
            ],
            "control_char_ratio": [len(CONTROL_CHARS.findall(text)) / max(1, len(text)) for text in texts],
            "replacement_char_ratio": [text.count("\ufffd") / max(1, len(text)) for text in texts],
            "language": [_language(text) if check_language and text.strip() else None for text in texts],
        }
    )


def chunks_profile(chunks: pa.Table) -> pd.DataFrame:
    columns = ("chunk_id", "doc_id", "source", "uri", "tenant", "n_tokens", "text_hash")
    return pd.DataFrame({name: chunks.column(name).to_pylist() for name in columns})


def embeddings_profile(chunks: pa.Table) -> pd.DataFrame:
    vectors = chunks.column("vector")
    dim = vectors.type.list_size
    matrix = np.asarray(pc.list_flatten(vectors).to_numpy(zero_copy_only=False), dtype=np.float64).reshape(-1, dim)
    finite = np.isfinite(matrix).all(axis=1)
    norms = np.where(finite, np.linalg.norm(np.nan_to_num(matrix), axis=1), np.nan)
    return pd.DataFrame(
        {
            "chunk_id": chunks.column("chunk_id").to_pylist(),
            "uri": chunks.column("uri").to_pylist(),
            "dim": dim,
            "is_finite": finite,
            "norm": norms,
        }
    )


def run_profile(documents: pa.Table, changes: ChangeSet, quarantined: list[Quarantined]) -> pd.DataFrame:
    """One row per source: its documents before and after the run, and what it loses.

    `documents` (its table's rows) is the state the last successful run left; shares are of the
    source's documents, so one broken file in a small incremental run is not "most of the source".
    """
    active = documents.filter(pc.field("status") == "active").column("source").to_pylist()
    new = changes.to_parse.filter(pc.field("change") == "new").column("source").to_pylist()
    deleted = changes.deleted.column("source").to_pylist()
    set_aside = {(q.source, q.uri) for q in quarantined}
    rows = []
    for source in sorted(set(documents.column("source").to_pylist()) | set(changes.to_parse.column("source").to_pylist())):
        before = active.count(source)
        current = before + new.count(source) - deleted.count(source)
        lost = deleted.count(source)
        rows.append(
            {
                "source": source,
                "previous_documents": before,
                "current_documents": current,
                "deleted_share": lost / before if before else None,
                "quarantined_share": sum(s == source for s, _ in set_aside) / current if current > 0 else None,
                "document_count_ratio": current / before if before else None,
            }
        )
    return pd.DataFrame(rows)


# -- the gate --------------------------------------------------------------------------------


class QualityGate:
    """Validates each stage of one run and keeps the results for `kbflow quality`.

    `run` is the run's RunRecord: on exit the gate records there where the results
    are, whether every expectation passed, and how long validation took.
    """

    def __init__(self, config: QualityConfig, run, allow_mass_delete: bool = False) -> None:
        self.config, self.run, self.run_id = config, run, run.run_id
        self.parameters = config.parameters()
        if allow_mass_delete:
            self.parameters["max_deleted_share"] = 1.0
            self.parameters["min_document_count_ratio"] = 0.0
        self.results: list[SuiteResult] = []
        self._context = None

    @property
    def summary_path(self) -> Path | None:
        if self.config.results_dir is None:
            return None
        return self.config.results_dir / "runs" / f"{self.run_id}.json"

    def check(self, stage: str, profile: pd.DataFrame, **parameters: Any) -> SuiteResult:
        """Validate a stage's profile; raise QualityGateFailed on a blocking failure."""
        started = time.perf_counter()
        if self._context is None:
            self._context = open_context(self.config.results_dir)  # the GX import is charged here
        suite = load_suite(stage, self.config.expectations_dir)
        result = validate_frame(self._context, suite, profile, {**self.parameters, **parameters}, self.run_id)
        result.duration_s = round(time.perf_counter() - started, 4)
        self.results.append(result)
        if result.blocking_failures:
            raise QualityGateFailed(result.blocking_failures)
        return result

    @property
    def duration_s(self) -> float:
        return sum(result.duration_s for result in self.results)

    def summary(self) -> dict[str, Any]:
        """The run's results, one entry per suite (a suite validated per batch is merged)."""
        return {
            "run_id": self.run_id,
            "success": all(result.success for result in self.results) if self.results else None,  # None: no check ran
            "suites": [result.as_dict() for result in merge_results(self.results)],
        }

    def __enter__(self) -> QualityGate:
        return self

    def __exit__(self, *exc_info) -> None:
        """Keep the results: summary JSON, GX Data Docs, Prefect artifacts."""
        summary = self.summary()
        if self.summary_path is not None:
            self.summary_path.parent.mkdir(parents=True, exist_ok=True)
            if self._context is not None:
                self._context.build_data_docs()
                make_site_offline(data_docs_index(self.config.results_dir).parent)  # GX links CDN assets
            # One site for all runs: a run that validated nothing still links to it.
            docs_index = data_docs_index(self.config.results_dir)
            summary["data_docs"] = str(docs_index) if docs_index.is_file() else None
            self.summary_path.write_text(json.dumps(summary, indent=2, default=str))
            self.run.quality_results = str(self.summary_path)
        self.run.dq_success = summary["success"]
        self.run.stage_durations["quality_checks"] = round(self.duration_s, 4)  # part of the stages above
        publish_artifacts(summary)


def data_docs_index(results_dir: Path) -> Path:
    return results_dir / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


def publish_artifacts(summary: dict[str, Any]) -> None:
    """A markdown summary and a table of expectation results, shown next to the run in Prefect."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None or not summary["suites"]:
        return
    rows = [
        {"suite": suite["name"], **{k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in e.items()}}
        for suite in summary["suites"]
        for e in suite["expectations"]
    ]
    failed = [row for row in rows if not row["success"]]
    lines = [
        f"# Data quality of run `{summary['run_id']}`: {'passed' if summary['success'] else 'failures'}",
        "",
        "| suite | result | expectations | failed |",
        "|---|---|---|---|",
        *(
            f"| {s['name']} | {'✅' if s['success'] else '❌'} | {len(s['expectations'])} "
            f"| {sum(not e['success'] for e in s['expectations'])} |"
            for s in summary["suites"]
        ),
        "",
        *(f"- ❌ `{row['suite']}.{row['type']}({row['column']})`: {row['unexpected_count']} rows, "
          f"{row['on_failure']}" for row in failed),
        "",
        f"Data Docs: `{summary.get('data_docs')}`" if summary.get("data_docs") else "",
    ]
    create_markdown_artifact("\n".join(lines), key="kbflow-quality", description="kbflow data-quality summary")
    create_table_artifact(rows, key="kbflow-expectations", description="kbflow expectation results")


def quarantine_failed_rows(
    stage: str, table: pa.Table, profile: pd.DataFrame, result: SuiteResult
) -> tuple[pa.Table, list[Quarantined]]:
    """Drop the rows that failed a quarantining expectation; one record per dropped row."""
    failed = result.failed_rows()
    quarantined = []
    for row in sorted(failed):
        record = table.slice(row, 1).to_pylist()[0]
        reasons = failed[row]
        quarantined.append(
            Quarantined(
                source=record["source"],
                uri=record["uri"],
                stage=f"quality:{stage}",
                reason="; ".join(f"{o.type}({o.column})" for o in reasons),
                detail=json.dumps({o.column: _jsonable(profile.at[row, o.column]) for o in reasons if o.column}),
                doc_id=record["doc_id"],
                chunk_id=record.get("chunk_id"),
                content_hash=record.get("content_hash") or record.get("text_hash"),
            )
        )
    keep = pa.array([row not in failed for row in range(table.num_rows)], pa.bool_())
    return table.filter(keep), quarantined


PROFILES = {
    "documents": lambda table, gate: documents_profile(table, bool(gate.config.allowed_languages)),
    "chunks": lambda table, gate: chunks_profile(table),
    "embeddings": lambda table, gate: embeddings_profile(table),
}


def check_table(
    gate: QualityGate, stage: str, table: pa.Table, parameters: dict[str, Any] | None = None
) -> tuple[pa.Table, list[Quarantined]]:
    """Validate a stage's table; drop and quarantine failing rows; raise on a blocking failure."""
    if table.num_rows == 0:
        return table, []
    profile = PROFILES[stage](table, gate)
    result = gate.check(stage, profile, **(parameters or {}))
    return quarantine_failed_rows(stage, table, profile, result)


@task(name="quality", cache_policy=NO_CACHE)
def check_quality(
    gate: QualityGate, stage: str, table: pa.Table, parameters: dict[str, Any] | None = None
) -> tuple[pa.Table, list[Quarantined]]:
    """Gate a stage's output with its expectation suite."""
    return check_table(gate, stage, table, parameters)


@task(name="quality-run", cache_policy=NO_CACHE)
def check_run(gate: QualityGate, profile: pd.DataFrame) -> SuiteResult:
    """Batch-level checks per source (mass deletion, quarantine share, count change)."""
    return gate.check("run", profile)
