"""Promotion: switch the index to another model (or chunking) only when the labeled queries do not lose.

`kbflow reindex` builds the new index in staging; before it is switched in, the configured
`[evaluation] queries` are searched on the current index (with the model it was built with) and
on the staged one (with the configured model), in the default search mode, as `kbflow search`
ranks them. The switch is refused when MRR@10 drops by more than `[evaluation] max_mrr_drop`,
unless `--allow-worse`. With no queries configured, or no index yet, there is nothing to compare:
the reindex goes on and says so in its record.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow.config import KbflowConfig
from kbflow.queries import LabeledQuery, read_queries
from kbflow.relevance import RANK_CUTOFF
from kbflow.runs import promotion_line
from kbflow.search import rank, rerank, rerank_depth, retrieve
from kbflow.store import Store
from kbflow.tasks.evaluation.evaluate import score_rankings

log = logging.getLogger(__name__)

METRIC = "mrr@10"
ARTIFACT_KEY = "kbflow-promotion"


def query_scores(config: KbflowConfig, labeled: list[LabeledQuery]) -> dict[str, float]:
    """The queries' metrics on the index of `config` (its store, its model), in its default search mode."""
    settings, depth = config.search, RANK_CUTOFF
    candidates = retrieve(config, [q.query for q in labeled], depth)
    wide = rerank_depth(settings, depth)
    rankings = [rank(c, settings.mode, wide, settings.hybrid_fusion, settings.hybrid_weight) for c in candidates]
    rankings = rerank(settings, [q.query for q in labeled], rankings, depth)
    return score_rankings(labeled, rankings, RANK_CUTOFF)


def decide(before: dict[str, float], after: dict[str, float], max_drop: float, allow_worse: bool) -> dict[str, Any]:
    """Promote unless MRR@10 fell by more than `max_drop` (and the caller did not allow it)."""
    change = round(after[METRIC] - before[METRIC], 6)
    worse = change < -max_drop
    decision = "refused" if worse and not allow_worse else ("promoted_anyway" if worse else "promoted")
    return {"decision": decision, "metric": METRIC, "before": round(before[METRIC], 6),
            "after": round(after[METRIC], 6), "change": change, "max_drop": max_drop,
            "hit@5": {"before": round(before["hit@5"], 6), "after": round(after["hit@5"], 6)}}


def compare_indexes(
    config: KbflowConfig, store: Store, staging_uri: str, allow_worse: bool
) -> dict[str, Any]:
    """The promotion decision for switching `store` to the index staged at `staging_uri`."""
    queries = config.evaluation.queries
    base = {"decision": "unchecked", "max_drop": config.evaluation.max_mrr_drop}
    if queries is None:
        return {**base, "reason": "no [evaluation] queries configured"}
    old_model = store.index_model()
    if old_model is None:
        return {**base, "reason": "no index to compare with"}
    labeled = read_queries(Path(queries))
    before_config = config.model_copy(deep=True)
    before_config.embedding.model = old_model  # the current index is searched with the model it was built with
    after_config = config.model_copy(deep=True)
    after_config.store.uri = staging_uri
    before = query_scores(before_config, labeled)
    after = query_scores(after_config, labeled)
    decision = decide(before, after, config.evaluation.max_mrr_drop, allow_worse)
    return {**decision, "queries": str(queries), "n": len(labeled), "mode": config.search.mode,
            "model_before": old_model, "model_after": config.embedding.model}


def promotion_markdown(promotion: dict[str, Any]) -> str:
    """The decision as a Prefect artifact: before and after side by side."""
    if promotion.get("decision") == "unchecked":
        return f"## Promotion not checked\n\n{promotion.get('reason', '')}\n"
    return f"""## Promotion: {promotion['decision']}

{promotion_line(promotion)}

| | model | MRR@10 | hit@5 |
|---|---|---|---|
| current index | `{promotion.get('model_before')}` | {promotion['before']:.3f} | {promotion['hit@5']['before']:.3f} |
| staged index | `{promotion.get('model_after')}` | {promotion['after']:.3f} | {promotion['hit@5']['after']:.3f} |
"""


def publish_artifact(promotion: dict[str, Any]) -> None:
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is not None:
        create_markdown_artifact(promotion_markdown(promotion), key=ARTIFACT_KEY, description="kbflow reindex promotion")


@task(name="compare-indexes", cache_policy=NO_CACHE)
def compare_indexes_task(config: KbflowConfig, store: Store, staging_uri: str, allow_worse: bool) -> dict[str, Any]:
    """Score the configured queries on the current and the staged index; decide whether to switch."""
    promotion = compare_indexes(config, store, staging_uri, allow_worse)
    publish_artifact(promotion)
    log.info("reindex %s", promotion_line(promotion))
    return promotion
