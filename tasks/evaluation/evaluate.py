"""Evaluate: score the index on labeled queries, per search mode and per source.

What the `evaluate` flow does around the shared relevance rules (kbflow.relevance):
labeled queries in (a JSONL file or a dataset's test split), scores per mode and
per source, the fusion weight grid (`tune_fusion`), results JSON, chart, artifact.
"""

from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow.config import KbflowConfig
from kbflow.dataset_files import read_split
from kbflow.errors import InvalidInput
from kbflow.queries import LabeledQuery, read_queries, unique
from kbflow.relevance import METRIC_NAMES, hit_keys, matched_ids, mean_metrics, query_metrics
from kbflow.search import FUSIONS, Candidates, rank, rerank, rerank_depth, retrieve
from kbflow.store import CHUNKS, Store, sql_list

log = logging.getLogger(__name__)

# -- labeled queries ------------------------------------------------------------------------

UNKNOWN_SOURCE = "unknown"  # a query whose relevant ids are in no indexed document


def read_dataset_queries(dataset_dir: Path) -> list[LabeledQuery]:
    """The test split of an embedding-pairs dataset: each anchor's relevant id is its positive chunk."""

    table = read_split(Path(dataset_dir), "test")
    missing = {"anchor", "positive_chunk_id", "source"} - set(table.column_names)
    if missing:
        raise InvalidInput(f"{dataset_dir}: not an embedding-pairs dataset (no {', '.join(sorted(missing))} column)")
    by_anchor: dict[str, LabeledQuery] = {}
    for row in table.select(["anchor", "positive_chunk_id", "source"]).to_pylist():
        found = by_anchor.setdefault(row["anchor"], LabeledQuery(row["anchor"], [], row["source"]))
        if row["positive_chunk_id"] not in found.relevant:
            found.relevant.append(row["positive_chunk_id"])
    if not by_anchor:
        raise InvalidInput(f"{dataset_dir}: the test split is empty; build the dataset with a test_share > 0")
    return list(by_anchor.values())


def query_sources(labeled: Sequence[LabeledQuery], catalog: Sequence[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Each query's source, and the relevant ids that name nothing in `catalog` (labeling errors).

    A query's source is the labels' own, else that of its first relevant id found in
    the catalog (documents and chunks: uri, doc_id, chunk_id, source), else "unknown".
    """
    owner: dict[str, str] = {}
    for entry in catalog:
        for key in hit_keys(entry):
            owner.setdefault(key, entry["source"])
    sources, unresolved = [], []
    for query in labeled:
        found = [owner[r] for r in query.relevant if r in owner]
        unresolved.extend(r for r in query.relevant if r not in owner)
        sources.append(query.source or (found[0] if found else UNKNOWN_SOURCE))
    return sources, unique(unresolved)


def index_catalog(store: Store, source_names: list[str], ids: Iterable[str]) -> list[dict[str, Any]]:
    """The indexed documents (doc_id, uri, source), and the chunks whose chunk_id is among `ids`."""
    columns = ["doc_id", "uri", "source"]
    catalog = store.documents(source_names).select(columns).to_pylist()
    wanted = sorted(set(ids))
    if wanted and store.has(CHUNKS):
        catalog += store.chunks(["chunk_id", *columns], where=f"chunk_id IN ({sql_list(wanted)})").to_pylist()
    return catalog


# -- scores per mode, per source; the fusion grid ------------------------------------------


def score_rankings(
    labeled: Sequence[LabeledQuery],
    rankings: Sequence[Sequence[dict[str, Any]]],
    k: int,
    sources: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Mean metrics of one ranked hit list per query; with `sources`, also `per_source` means."""
    per_query = [
        query_metrics(matched_ids(hits, query.relevant), len(query.relevant), k)
        for query, hits in zip(labeled, rankings, strict=True)
    ]
    scores: dict[str, Any] = mean_metrics(per_query)
    if sources is not None:
        groups: dict[str, list[dict[str, float]]] = defaultdict(list)
        for source, metrics in zip(sources, per_query, strict=True):
            groups[source].append(metrics)
        scores["per_source"] = {source: mean_metrics(groups[source]) for source in sorted(groups)}
    return scores


# The grid's fusions: one weight each. Adaptive fusion has two (kbflow.search.HybridFusion) and is
# chosen across corpora (bench/retrieval_bench.py --choose), not per index on a handful of queries.
FIXED_FUSIONS = tuple(fusion for fusion in FUSIONS if fusion != "adaptive")
WEIGHT_GRID = tuple(i / 10 for i in range(11))  # 0 (fts only) .. 1 (vector only): both parts are in the grid
TUNE_METRIC, TUNE_TIE_BREAK = "ndcg@10", "hit@5"


def tune_fusion(
    labeled: Sequence[LabeledQuery], candidates: Sequence[Candidates], k: int, depth: int
) -> dict[str, Any]:
    """The hybrid fusion and weight that score best (nDCG@10, then hit@5, then the weight nearer 0.5).

    Every grid point fuses the same retrieved candidate lists in memory. Weights 0
    and 1 reproduce the fts and the vector ranking, so the best point is never worse
    than the better of the two on these queries. (Scored before any rerank stage.)
    """
    grid = []
    for fusion in FIXED_FUSIONS:
        for weight in WEIGHT_GRID:
            rankings = [rank(c, "hybrid", depth, fusion, weight) for c in candidates]
            grid.append({"fusion": fusion, "weight": weight, **score_rankings(labeled, rankings, k)})
    best = max(grid, key=lambda p: (p[TUNE_METRIC], p[TUNE_TIE_BREAK], -abs(p["weight"] - 0.5)))
    metrics = {name: value for name, value in best.items() if name not in ("fusion", "weight")}
    return {
        "fusion": best["fusion"],
        "weight": best["weight"],
        "metrics": metrics,
        "grid": grid,
        "config": search_config_lines(best["fusion"], best["weight"]),
    }


def search_config_lines(fusion: str, weight: float) -> str:
    """The `[search]` lines that make search use a fusion and weight."""
    return f'[search]\nhybrid_fusion = "{fusion}"\nhybrid_weight = {weight:g}'


@task(name="query-sources", cache_policy=NO_CACHE)
def find_sources(config: KbflowConfig, labeled: list[LabeledQuery]) -> tuple[list[str], list[str]]:
    """Each query's source, from the index; and the relevant ids that name nothing in it."""
    relevant = {r for query in labeled for r in query.relevant}
    catalog = index_catalog(Store(config.store), [source.name for source in config.sources], relevant)
    return query_sources(labeled, catalog)


@task(name="load-queries", cache_policy=NO_CACHE)
def load_queries(queries: Path | None, dataset: Path | None) -> list[LabeledQuery]:
    """The labeled queries of a JSONL file, or of a dataset's test split."""
    return read_dataset_queries(dataset) if dataset is not None else read_queries(queries)


GENERATED_LABEL = "generated"


def generated_queries(store: Store, model: str, count: int, seed: int) -> list[LabeledQuery]:
    """Questions made from the index's own section headings, each relevant to its document.

    For an index without labeled queries: the same offline heading generator the fine-tuning
    datasets use (tasks/datasets/generators.py), one query per distinct question (relevant: every
    document it was made from), a seeded sample of `count`. They measure how well a section
    is found by the question its heading asks: a proxy for users' questions, not a substitute.
    """
    from kbflow.tasks.datasets.snapshot import read_index, read_passages
    from kbflow.tasks.datasets.generators import HeadingGenerator

    passages = read_passages(read_index(store, model))
    document_of = {passage.chunk_id: passage.doc_id for passage in passages}
    relevant: dict[str, list[str]] = defaultdict(list)
    for pair in HeadingGenerator(min_query_tokens=2).generate(passages, random.Random(seed)):
        relevant[pair.query].append(document_of[pair.chunk_id])
    if not relevant:
        raise InvalidInput(f"no questions could be made from the headings of the index in {store.uri}")
    chosen = random.Random(seed).sample(sorted(relevant), min(count, len(relevant)))
    return [LabeledQuery(query, unique(relevant[query])) for query in chosen]


@task(name="generate-queries", cache_policy=NO_CACHE)
def generate_queries(config: KbflowConfig) -> list[LabeledQuery]:
    """Questions from the index's headings (`[evaluation] generated_queries` of them)."""
    settings = config.evaluation
    return generated_queries(Store(config.store), config.embedding.model, settings.generated_queries, settings.seed)


@task(name="tune-fusion", cache_policy=NO_CACHE)
def tune(labeled: list[LabeledQuery], candidates: list[Candidates], k: int, depth: int) -> dict[str, Any]:
    """Grid-search the hybrid fusion and weight on these queries."""
    return tune_fusion(labeled, candidates, k, depth)


# -- results, chart, artifact ---------------------------------------------------------------

CHART_METRICS = ("ndcg@10", "hit@5")
CHART_RUNS = 8  # this run and the 7 before it



def save_results(results_dir: Path, report: dict[str, Any], details: dict[str, Any]) -> Path:
    """`<results_dir>/<run_id>.json`: the report plus what the run evaluated (per query)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{report['run_id']}.json"
    path.write_text(json.dumps({**report, **details}, indent=2, default=str), encoding="utf-8")
    return path


def previous_results(results_dir: Path, last: int = CHART_RUNS) -> list[dict[str, Any]]:
    """The newest `last` eval results in the folder, oldest first (run ids sort by time)."""
    results = []
    for path in sorted(results_dir.glob("*.json"))[-last:]:
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            log.warning("skipping unreadable eval result %s", path)
            continue
        if isinstance(result, dict) and "modes" in result:
            results.append(result)
    return results


def draw_chart(results: Sequence[dict[str, Any]], path: Path) -> Path:
    """A PNG of nDCG@10 and hit@5 per mode (and tuned hybrid) for each run, side by side."""
    from matplotlib.figure import Figure  # lazy: seconds to import; Figure needs no pyplot state

    series = unique(name for r in results for name in [*r["modes"], *(["tuned"] if r.get("tuned") else [])])
    labels = [f"{r['run_id'][:13]}\n{r.get('label', '')} n={r['modes'][next(iter(r['modes']))]['n']}" for r in results]
    figure = Figure(figsize=(max(7.0, 1.3 * len(results) * len(CHART_METRICS)), 4.2))
    axes = figure.subplots(1, len(CHART_METRICS), sharey=True)
    width = 0.8 / max(len(series), 1)
    for ax, metric in zip(axes, CHART_METRICS):
        for i, name in enumerate(series):
            values = [_chart_value(result, name, metric) for result in results]
            offsets = [x - 0.4 + width * (i + 0.5) for x in range(len(results))]
            ax.bar(offsets, values, width, label=name)
        ax.set_xticks(range(len(results)), labels, fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(metric)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower left")
    figure.suptitle("kbflow evaluate: retrieval per mode, this run and earlier ones")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return path


def _chart_value(result: dict[str, Any], name: str, metric: str) -> float:
    if name == "tuned":
        return (result.get("tuned") or {}).get("metrics", {}).get(metric, 0.0)
    return result["modes"].get(name, {}).get(metric, 0.0)


def results_markdown(report: dict[str, Any]) -> str:
    """The run's metrics as a markdown table (the Prefect artifact)."""
    names = [name.format(k=report["k"]) for name in METRIC_NAMES]
    rows = [(mode, scores) for mode, scores in report["modes"].items()]
    if report.get("tuned"):
        tuned = report["tuned"]
        rows.append((f"hybrid tuned ({tuned['fusion']}, weight {tuned['weight']:g})", tuned["metrics"]))
    lines = [
        f"# Retrieval evaluation `{report['run_id']}` ({report.get('label', '')})",
        "",
        "| mode | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
        *("| " + mode + " | " + " | ".join(f"{scores.get(n, '')}" for n in names) + " |" for mode, scores in rows),
        "",
        f"Results: `{report['results']}`  Chart: `{report['chart']}`",
    ]
    if report.get("tuned"):
        lines += ["", "Best fusion on these queries; put in kbflow.toml:", "```toml", report["tuned"]["config"], "```"]
    return "\n".join(lines)


def publish_artifact(report: dict[str, Any]) -> None:
    """The metrics table as a Prefect markdown artifact, key "kbflow-eval" (inside a flow run only)."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is not None:
        create_markdown_artifact(results_markdown(report), key="kbflow-eval", description="kbflow retrieval evaluation")


@task(name="save-results", cache_policy=NO_CACHE)
def record_results(results_dir: Path, report: dict[str, Any], details: dict[str, Any]) -> dict[str, Any]:
    """Results JSON, the chart of this and earlier runs, the artifact; the report with their paths."""
    report = {**report, "results": str(results_dir / f"{report['run_id']}.json"),
              "chart": str(results_dir / f"{report['run_id']}.png")}
    save_results(results_dir, report, details)
    draw_chart(previous_results(results_dir), Path(report["chart"]))
    publish_artifact(report)
    return report


# -- retrieval and ranking, through the same path as `kbflow search` -----------------------


@task(name="retrieve", cache_policy=NO_CACHE)
def retrieve_candidates(config: KbflowConfig, labeled: list[LabeledQuery], depth: int) -> list[Candidates]:
    """Both rankings of every query, deep enough for every mode, fusion and rerank stage."""
    return retrieve(config, [query.query for query in labeled], depth)


@task(name="rank", cache_policy=NO_CACHE)
def rank_mode(
    config: KbflowConfig, labeled: list[LabeledQuery], candidates: list[Candidates], mode: str, depth: int
) -> list[list[dict[str, Any]]]:
    """Each query's top `depth` hits in one mode, as search ranks them ([search] fusion, rerank stage)."""
    settings = config.search
    wide = rerank_depth(settings, depth)
    rankings = [rank(c, mode, wide, settings.hybrid_fusion, settings.hybrid_weight, settings.rare_term_weight)
                for c in candidates]
    return rerank(settings, [query.query for query in labeled], rankings, depth)


def query_details(
    labeled: Sequence[LabeledQuery], sources: Sequence[str], rankings: dict[str, list[list[dict[str, Any]]]]
) -> list[dict[str, Any]]:
    """Per query: its labels and, per mode, the ranks of relevant hits and the top three uris."""
    details = []
    for i, query in enumerate(labeled):
        per_mode = {}
        for mode, lists in rankings.items():
            matches = matched_ids(lists[i], query.relevant)
            per_mode[mode] = {"ranks": [r for r, m in enumerate(matches, start=1) if m is not None],
                              "top": [hit["uri"] for hit in lists[i][:3]]}
        details.append({"query": query.query, "relevant": query.relevant, "source": sources[i], "modes": per_mode})
    return details
