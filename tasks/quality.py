"""Quality: run the Great Expectations suite of a stage and apply its policy.

Suites are GX 1.x JSON files in expectations/ (or `quality.expectations_dir`),
loaded at run time so users edit checks without code. Each expectation's
`meta.on_failure` says what a failure does:
- "quarantine": the failing rows are set aside with the expectation as reason,
  and the run goes on with the rest;
- "block": the publish is stopped and the store stays exactly as it was.
Thresholds come from config through GX expectation parameters (`{"$PARAMETER": "max_tokens"}`).

GX is imported lazily: it takes seconds, and only this stage needs it.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow.errors import QualityGateFailed
from kbflow.quarantine import Quarantined

SUITES = ("documents", "chunks", "embeddings")
EXAMPLES_PER_EXPECTATION = 5


@dataclass
class ExpectationOutcome:
    suite: str
    type: str
    column: str | None
    success: bool
    on_failure: str  # "quarantine" | "block"
    observed: Any = None
    unexpected_count: int = 0
    examples: list[Any] = field(default_factory=list)
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


def bundled_expectations_dir() -> Path:
    return Path(str(resources.files("expectations")))


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
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (np.generic,)):
        return value.item()
    return value


@lru_cache(maxsize=1)
def _context():
    """One ephemeral GX context per process: creating one makes a temporary docs folder."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX sets INFO on some of its loggers at import ("Created temporary directory ...").
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("great_expectations"):
            logging.getLogger(name).setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def validate_frame(suite: dict[str, Any], frame: pd.DataFrame, parameters: dict[str, Any]) -> SuiteResult:
    """Run one GX suite over a whole dataframe."""
    import great_expectations as gx

    context = _context()
    gx_suite = context.suites.add_or_update(gx.ExpectationSuite(**suite))
    data_source = context.data_sources.add_or_update_pandas("kbflow")
    asset = next((a for a in data_source.assets if a.name == suite["name"]), None) or data_source.add_dataframe_asset(
        suite["name"]
    )
    batch = next((b for b in asset.batch_definitions if b.name == "run"), None) or (
        asset.add_batch_definition_whole_dataframe("run")
    )
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=suite["name"], data=batch, suite=gx_suite)
    )
    result = definition.run(
        batch_parameters={"dataframe": frame.reset_index(drop=True)},
        expectation_parameters=parameters,
        result_format={"result_format": "COMPLETE", "partial_unexpected_count": EXAMPLES_PER_EXPECTATION},
    )
    outcomes = []
    for item in result.results:
        config, details = item.expectation_config, item.result or {}
        outcomes.append(
            ExpectationOutcome(
                suite=suite["name"],
                type=config.type,
                column=config.kwargs.get("column"),
                success=bool(item.success),
                on_failure=config.meta.get("on_failure", "block"),
                observed=_jsonable(details.get("observed_value")),
                unexpected_count=int(details.get("unexpected_count") or 0),
                examples=[_jsonable(v) for v in (details.get("partial_unexpected_list") or [])],
                unexpected_rows=[int(i) for i in (details.get("unexpected_index_list") or [])],
            )
        )
    return SuiteResult(suite["name"], outcomes)


def documents_profile(documents: pa.Table) -> pd.DataFrame:
    texts = documents.column("text").to_pylist()
    return pd.DataFrame(
        {
            "doc_id": documents.column("doc_id").to_pylist(),
            "source": documents.column("source").to_pylist(),
            "uri": documents.column("uri").to_pylist(),
            "n_chars": [len(text.strip()) for text in texts],
            "replacement_char_ratio": [text.count("\ufffd") / max(1, len(text)) for text in texts],
        }
    )


def chunks_profile(chunks: pa.Table) -> pd.DataFrame:
    columns = ("chunk_id", "doc_id", "source", "uri", "tenant", "n_tokens")
    return pd.DataFrame({name: chunks.column(name).to_pylist() for name in columns})


def embeddings_profile(chunks: pa.Table) -> pd.DataFrame:
    vectors = chunks.column("vector")
    dim = vectors.type.list_size
    matrix = np.asarray(pc.list_flatten(vectors).to_numpy(zero_copy_only=False), dtype=np.float64).reshape(-1, dim)
    finite = np.isfinite(matrix).all(axis=1)
    norms = np.where(finite, np.linalg.norm(np.nan_to_num(matrix), axis=1), np.nan)
    return pd.DataFrame(
        {"chunk_id": chunks.column("chunk_id").to_pylist(), "dim": dim, "is_finite": finite, "norm": norms}
    )


PROFILES = {"documents": documents_profile, "chunks": chunks_profile, "embeddings": embeddings_profile}
ID_COLUMNS = {"documents": "doc_id", "chunks": "chunk_id", "embeddings": "chunk_id"}


def check_table(
    stage: str, table: pa.Table, parameters: dict[str, Any], expectations_dir: Path | None = None
) -> tuple[pa.Table, list[Quarantined], SuiteResult | None]:
    """Validate a stage's table; drop and quarantine failing rows; raise on a blocking failure."""
    if table.num_rows == 0:
        return table, [], None
    result = validate_frame(load_suite(stage, expectations_dir), PROFILES[stage](table), parameters)
    if result.blocking_failures:
        raise QualityGateFailed(result.blocking_failures)
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
                detail=json.dumps({o.column: o.examples[:1] for o in reasons}, default=str)[:2000],
                doc_id=record["doc_id"],
                chunk_id=record.get("chunk_id"),
                content_hash=record.get("content_hash") or record.get("text_hash"),
            )
        )
    keep = pa.array([row not in failed for row in range(table.num_rows)], pa.bool_())
    return table.filter(keep), quarantined, result


@task(name="quality", cache_policy=NO_CACHE)
def check_quality(
    stage: str, table: pa.Table, parameters: dict[str, Any], expectations_dir: Path | None = None
) -> tuple[pa.Table, list[Quarantined], SuiteResult | None]:
    """Gate a stage's output with its expectation suite."""
    return check_table(stage, table, parameters, expectations_dir)
