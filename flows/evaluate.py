"""The `evaluate` flow: retrieval metrics of the index for labeled queries.

    labeled queries -> retrieve (vector + full-text candidates, one embedding pass)
                    -> rank per mode (as `kbflow search` does) -> metrics per mode and source
                    -> [tune: fuse the same candidates for every fusion and weight]
                    -> results JSON + chart + Prefect artifact

What is loaded: the labeled queries of a JSONL file (default `[evaluation] queries`)
or the test split of an embedding-pairs dataset, and the index read-only. Each run
writes `<evaluation.results_dir>/<run_id>.json` and a PNG chart of this run's
modes beside the earlier runs'; the index is never changed, nor the config (tuning
prints the `[search]` lines to use).
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

from prefect import flow

from kbflow import progress
from kbflow.config import EvalMode, KbflowConfig, load_config
from kbflow.errors import InvalidInput
from kbflow.relevance import RANK_CUTOFF
from kbflow.search import SEARCH_MODES
from kbflow.store import new_run_id
from kbflow.tasks.evaluation.evaluate import (
    GENERATED_LABEL,
    generate_queries,
    find_sources,
    load_queries,
    query_details,
    rank_mode,
    record_results,
    retrieve_candidates,
    score_rankings,
)
from kbflow.tasks.evaluation.evaluate import tune as tune_fusion

EVAL_MODES = get_args(EvalMode)


@flow(name="evaluate")
def evaluate(
    config_path: str,
    queries: str | None = None,
    k: int | None = None,
    mode: EvalMode = "all",
    dataset: str | None = None,
    tune: bool = False,
    generated: bool = False,
) -> dict:
    """Score vector, full-text and hybrid search (or one `mode`) on labeled queries; tune hybrid if asked.

    With `generated` (or `tune` and no labeled queries anywhere) the queries are questions made
    from the index's own headings. The top-level metrics are the first evaluated mode's
    (vector, fts, hybrid order).
    """
    config = load_config(config_path)
    modes = evaluated_modes(mode)
    k = k or config.evaluation.k
    depth = max(k, RANK_CUTOFF)  # hit@10, MRR@10 and nDCG@10 need ten hits, whatever k is
    generated = uses_generated(config, queries, dataset, tune, generated)
    queries_path, dataset_dir = resolve_inputs(config, queries, dataset, generated)
    labeled = generate_queries(config) if generated else load_queries(queries_path, dataset_dir)

    progress.report("eval queries", 0, len(labeled))  # retrieval encodes them all at once, then ranks
    candidates = retrieve_candidates(config, labeled, depth)
    progress.report("eval queries", len(labeled), len(labeled))
    sources, unresolved = find_sources(config, labeled)
    rankings = {m: rank_mode(config, labeled, candidates, m, depth) for m in modes}
    scores = {m: score_rankings(labeled, rankings[m], k, sources) for m in modes}

    first = scores[modes[0]]
    report = {
        **{name: value for name, value in first.items() if name != "per_source"},
        "mode": modes[0],
        "k": k,
        "modes": scores,
        "run_id": new_run_id(),
        "label": GENERATED_LABEL if generated else (dataset_dir or queries_path).name,
        "unresolved": len(unresolved),
    }
    if tune:
        report["tuned"] = tune_fusion(labeled, candidates, k, depth)
    details = {
        "inputs": {"queries": queries_path, "dataset": dataset_dir, "model": config.embedding.model,
                   "search": config.search.model_dump()},
        "unresolved_ids": unresolved,
        "queries": query_details(labeled, sources, rankings),
    }
    return record_results(config.evaluation.results_dir, report, details)


def evaluated_modes(mode: str) -> tuple[str, ...]:
    """"all" is every search mode in order; otherwise the one named."""
    if mode not in EVAL_MODES:
        raise InvalidInput(f"unknown mode {mode!r}; use one of {', '.join(EVAL_MODES)}")
    return SEARCH_MODES if mode == "all" else (mode,)


def uses_generated(config: KbflowConfig, queries: str | None, dataset: str | None, tune: bool, generated: bool) -> bool:
    """Generated questions when asked, or when tuning with no labeled queries anywhere."""
    return generated or (tune and queries is None and dataset is None and config.evaluation.queries is None)


def resolve_inputs(
    config: KbflowConfig, queries: str | None, dataset: str | None, generated: bool = False
) -> tuple[Path | None, Path | None]:
    """The queries file (default `[evaluation] queries`) or the dataset folder to evaluate on;
    neither for generated questions."""
    if (queries is not None) + (dataset is not None) + generated > 1:
        raise InvalidInput("give one of --queries, --dataset or --generated")
    if dataset is not None:
        return None, Path(dataset).expanduser().resolve()
    if queries is not None:
        return Path(queries).expanduser().resolve(), None
    if generated:
        return None, None
    if config.evaluation.queries is None:
        raise InvalidInput("no queries: pass --queries FILE.jsonl, --dataset DIR or --generated (questions made "
                         "from the index's headings), or set [evaluation] queries")
    return config.evaluation.queries, None
