"""Quality: run a stage's Great Expectations suite, apply its policy, keep the results.

Suites are GX 1.x JSON files in expectations/, loaded at every run so users edit
checks without code; a copy in `quality.expectations_dir` overrides the bundled file
of the same name (file by file). They check the columns of a stage's profile
(kbflow.tasks.quality.profiles: shape, and content rules from kbflow.tasks.quality.content); a suite
naming another column is refused when it is loaded. Each expectation's
`meta.on_failure` says what a failure does:
- "quarantine": the failing rows are set aside, the reason saying in numbers which
  check failed ("n_chars 0 < min_document_chars 10"), and the run goes on with the rest;
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
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow.config import QualityConfig
from kbflow.errors import InvalidInput, QualityGateFailed
from kbflow.models import Tokenizer
from kbflow.quarantine import Quarantined
from kbflow.tasks.quality.data_docs import make_site_offline
from kbflow.tasks.quality.profiles import PROFILE_COLUMNS, chunks_profile, documents_profile, embeddings_profile
from kbflow.tasks.quality.report import publish_artifacts

EXAMPLES_PER_EXPECTATION = 5
QUARANTINE_ROWS_SHOWN = 10  # in the run's summary and its Prefect artifact


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
    bounds: list[Bound] = field(default_factory=list)  # the thresholds it checks, with their [quality] keys

    def violation(self, value: Any) -> str:
        """What is wrong with one value, in numbers: "quarantined_share 0.50 > max_quarantined_share 0.25"."""
        # The suite's own column name: what a user greps the suite for; a table-level check by its type.
        label = self.column or f"{self.suite}.{self.type}"
        for bound in self.bounds:
            if bound.violated_by(value):
                return f"{label} {_number(value)} {bound}"
        return f"{label} {_number(value)}: {self.type}"

    @property
    def message(self) -> str:
        """The failure, in numbers, for people: each offending value (with its row's id) against its threshold."""
        if self.success:
            return ""
        if self.examples and self.bounds:
            ids: dict[str, list[str]] = {}  # one line per distinct violation, with the rows that have it
            for example in self.examples:
                ids.setdefault(self.violation(example["value"]), []).append(str(example["id"]))
            parts = [f"{text} ({self.suite_id_label} {', '.join(names)})" for text, names in ids.items()]
            more = self.unexpected_count - len(self.examples)
            return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
        if self.bounds and self.observed is not None and not isinstance(self.observed, (list, dict)):
            return self.violation(self.observed)
        count = f", {self.unexpected_count} rows" if self.unexpected_count else ""
        return f"{self.suite}.{self.type}({self.column or 'table'}) failed{count}"

    @property
    def suite_id_label(self) -> str:
        return {"run": "source", "documents": "document", "chunks": "chunk", "embeddings": "chunk"}.get(self.suite, "row")

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "column": self.column,
            "success": self.success,
            "on_failure": self.on_failure,
            "observed": self.observed,
            "unexpected_count": self.unexpected_count,
            "examples": self.examples,
            "thresholds": [bound.as_dict() for bound in self.bounds],
            "message": self.message,
        }


@dataclass(frozen=True)
class Bound:
    """One threshold of an expectation: `min` or `max`, its value, and the `[quality]` key it came from."""

    side: str  # "min" | "max"
    value: Any
    parameter: str | None = None

    def violated_by(self, value: Any) -> bool:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not isinstance(self.value, (int, float)):
            return False
        return value < self.value if self.side == "min" else value > self.value

    def __str__(self) -> str:
        name = f"{self.parameter} " if self.parameter else ""
        return f"{'<' if self.side == 'min' else '>'} {name}{_number(self.value)}"

    def as_dict(self) -> dict[str, Any]:
        return {"side": self.side, "value": _jsonable(self.value), "parameter": self.parameter}


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def expectation_bounds(kwargs: dict[str, Any], parameters: dict[str, Any]) -> list[Bound]:
    """The min/max thresholds of an expectation's kwargs, `{"$PARAMETER": key}` resolved from `parameters`."""
    bounds = []
    for side in ("min", "max"):
        value = kwargs.get(f"{side}_value")
        parameter = None
        if isinstance(value, dict) and "$PARAMETER" in value:
            parameter = value["$PARAMETER"]
            value = parameters.get(parameter)
        if value is not None:
            bounds.append(Bound(side, _jsonable(value), parameter))
    return bounds


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


def suite_path(name: str, expectations_dir: Path | None = None) -> Path:
    """Where suite `name` is read from: the user's copy in `expectations_dir` if there is one, else the bundled file.

    One rule for ingest and dataset builds: a user folder overrides the suites it
    holds, file by file; any suite it lacks is the bundled one.
    """
    if expectations_dir is not None and (expectations_dir / f"{name}.json").is_file():
        return expectations_dir / f"{name}.json"
    return bundled_expectations_dir() / f"{name}.json"


def load_suite(name: str, expectations_dir: Path | None = None, columns: Iterable[str] | None = None) -> dict[str, Any]:
    """Suite `name` (see `suite_path`), its policies checked; with `columns`, every column it names must be one of them."""
    path = suite_path(name, expectations_dir)
    try:
        suite = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InvalidInput(f"cannot load expectation suite {path}: {error}") from error
    known = set(columns) if columns is not None else None
    for expectation in suite.get("expectations", []):
        policy = expectation.get("meta", {}).get("on_failure")
        if policy not in {"quarantine", "block"}:
            raise InvalidInput(
                f"{path}: expectation {expectation.get('type')} needs meta.on_failure "
                f"= \"quarantine\" or \"block\" (got {policy!r})"
            )
        column = expectation.get("kwargs", {}).get("column")
        if known is not None and column is not None and column not in known:
            raise InvalidInput(
                f"{path}: suite {suite.get('name', name)!r}, expectation {expectation.get('type')} names column "
                f"{column!r}, which the {name} profile does not have; it has: {', '.join(sorted(known))}"
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
    for expectation in suite.get("expectations", []):
        column = expectation.get("kwargs", {}).get("column")
        if column is not None and column not in frame.columns:
            raise InvalidInput(
                f"suite {name!r}, expectation {expectation.get('type')} names column {column!r}, "
                f"which the profile it checks does not have; it has: {', '.join(map(str, frame.columns))}"
            )
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
        # With a run time given, GX does not parse the run name as a date (dateutil reads a run id
        # like "…Z-3194ad" as UTC+32:34, and storing the result then raises).
        run_id=RunIdentifier(run_name=run_id, run_time=datetime.now(UTC)) if run_id else None,
    )
    (validation,) = result.run_results.values()
    # GX reports kwargs with parameters already resolved: take the [quality] key names from the suite itself.
    declared: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for expectation in suite.get("expectations", []):
        key = (expectation["type"], expectation.get("kwargs", {}).get("column"))
        declared.setdefault(key, []).append(expectation.get("kwargs", {}))
    outcomes = []
    for item in validation.results:
        config = item.expectation_config
        kwargs = (declared.get((config.type, config.kwargs.get("column"))) or [config.kwargs]).pop(0)
        outcomes.append(_outcome(name, item, frame, expectation_bounds(kwargs, parameters)))
    return SuiteResult(name, outcomes, duration_s=round(time.perf_counter() - started, 4))


def _outcome(suite: str, item, frame: pd.DataFrame, bounds: list[Bound]) -> ExpectationOutcome:
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
        bounds=bounds,
    )


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
        # Loaded now, so a suite naming a column its stage's profile lacks fails before any work.
        self.suites = {
            stage: load_suite(stage, config.expectations_dir, columns) for stage, columns in PROFILE_COLUMNS.items()
        }

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
        result = validate_frame(self._context, self.suites[stage], profile, {**self.parameters, **parameters}, self.run_id)
        result.duration_s = round(time.perf_counter() - started, 4)
        self.results.append(result)
        if result.blocking_failures:
            raise QualityGateFailed(result.blocking_failures)
        return result

    @property
    def duration_s(self) -> float:
        return sum(result.duration_s for result in self.results)

    def summary(self) -> dict[str, Any]:
        """The run's results, one entry per suite (a suite validated per batch is merged), and what it set aside."""
        quarantined = list(getattr(self.run, "quarantined", []))
        return {
            "run_id": self.run_id,
            "success": all(result.success for result in self.results) if self.results else None,  # None: no check ran
            "suites": [result.as_dict() for result in merge_results(self.results)],
            "quarantine": {
                "count": len(quarantined),
                "rows": [
                    {"source": q.source, "uri": q.uri, "stage": q.stage, "reason": q.reason}
                    for q in quarantined[:QUARANTINE_ROWS_SHOWN]
                ],
            },
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


def quarantine_failed_rows(
    stage: str, table: pa.Table, profile: pd.DataFrame, result: SuiteResult
) -> tuple[pa.Table, list[Quarantined]]:
    """Drop the rows that failed a quarantining expectation; one record per dropped row."""
    failed = result.failed_rows()
    quarantined = []
    for row in sorted(failed):
        record = table.slice(row, 1).to_pylist()[0]
        reasons = _one_per_column(failed[row])
        quarantined.append(
            Quarantined(
                source=record["source"],
                uri=record["uri"],
                stage=f"quality:{stage}",
                reason="; ".join(o.violation(_jsonable(profile.at[row, o.column])) if o.column else o.type
                                 for o in reasons),
                detail=json.dumps({o.column: _jsonable(profile.at[row, o.column]) for o in reasons if o.column}),
                doc_id=record["doc_id"],
                chunk_id=record.get("chunk_id"),
                content_hash=record.get("content_hash") or record.get("text_hash"),
            )
        )
    keep = pa.array([row not in failed for row in range(table.num_rows)], pa.bool_())
    return table.filter(keep), quarantined


def _one_per_column(outcomes: list[ExpectationOutcome]) -> list[ExpectationOutcome]:
    """A row's failed expectations, one per column: a configured threshold wins over a fixed one
    (an empty file fails both `n_chars >= 1` and `n_chars >= min_document_chars`; say it once)."""
    chosen: dict[str | None, ExpectationOutcome] = {}
    for outcome in outcomes:
        current = chosen.get(outcome.column)
        configured = any(bound.parameter for bound in outcome.bounds)
        if current is None or (configured and not any(bound.parameter for bound in current.bounds)):
            chosen[outcome.column] = outcome
    return list(chosen.values())


PROFILES = {
    "documents": lambda table, gate, tokenizer: documents_profile(table, bool(gate.config.allowed_languages)),
    "chunks": lambda table, gate, tokenizer: chunks_profile(table, tokenizer),
    "embeddings": lambda table, gate, tokenizer: embeddings_profile(table),
}


def check_table(
    gate: QualityGate, stage: str, table: pa.Table, parameters: dict[str, Any] | None = None,
    tokenizer: Tokenizer | None = None,
) -> tuple[pa.Table, list[Quarantined]]:
    """Validate a stage's table; drop and quarantine failing rows; raise on a blocking failure.

    `tokenizer` (the embedding model's) lets the chunks profile count unknown tokens.
    """
    if table.num_rows == 0:
        return table, []
    profile = PROFILES[stage](table, gate, tokenizer)
    result = gate.check(stage, profile, **(parameters or {}))
    return quarantine_failed_rows(stage, table, profile, result)


@task(name="quality", cache_policy=NO_CACHE)
def check_quality(
    gate: QualityGate, stage: str, table: pa.Table, parameters: dict[str, Any] | None = None,
    tokenizer: Tokenizer | None = None,
) -> tuple[pa.Table, list[Quarantined]]:
    """Gate a stage's output with its expectation suite."""
    return check_table(gate, stage, table, parameters, tokenizer)


@task(name="quality-run", cache_policy=NO_CACHE)
def check_run(gate: QualityGate, profile: pd.DataFrame) -> SuiteResult:
    """Run-level checks per source, over the whole run (mass deletion, quarantine share, count change,
    distinct chunk texts): the verdict does not depend on how the run was batched."""
    return gate.check("run", profile)
