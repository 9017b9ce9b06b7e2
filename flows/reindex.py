"""The `reindex` flow: re-embed everything with the configured model, blue-green.

What is loaded: every document of every source, from scratch, into a staging
store beside the index (`<store>/staging`; for an object store, a local folder
beside the config), through the whole ingest pipeline and its quality gates,
with the model the config names now. Only when that passes, and the configured
`[evaluation] queries` lose no more than `max_mrr_drop` of MRR@10 on it
(tasks/evaluation/promotion.py; `allow_worse` overrides), are `chunks` and
`documents` switched to it: one overwrite commit each, so search never mixes
vectors of two models. The decision and its numbers are in the run record
(`promotion`) and a Prefect artifact. The index before the switch stays
in the tables' history, tagged with its runs: `kbflow rollback` returns to it.
A blocked or failed reindex leaves the index exactly as it was. What the staging
run set aside (its quarantine) and its quality results are kept with the reindex
run before the staging store is deleted.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from prefect import flow

from kbflow.config import KbflowConfig, load_config
from kbflow.errors import PromotionRefused, QualityGateFailed
from kbflow.flows.ingest import ingest
from kbflow.lock import store_lock
from kbflow.quarantine import quarantined_from_rows
from kbflow.runs import RunRecord, promotion_line
from kbflow.store import Store
from kbflow.tasks.evaluation.promotion import compare_indexes_task

STAGING = "staging"


def staging_path(config: KbflowConfig) -> Path:
    """`<store>/staging`; for an object-store URI a local folder beside the config (then copied up)."""
    if config.store.is_local:
        return Path(config.store.uri) / STAGING
    return config.root / f".kbflow-{STAGING}-{hashlib.sha256(config.store.uri.encode()).hexdigest()[:16]}"


@flow(name="reindex")
def reindex(config_path: str, allow_worse: bool = False) -> dict:
    """Rebuild the index with the configured model in staging, check it, then switch to it.

    Raises PromotionRefused, switching nothing, when the configured queries score worse on the
    staged index than on the current one by more than `[evaluation] max_mrr_drop` (MRR@10).
    """
    config = load_config(config_path)
    staging_uri = str(staging_path(config))
    store = Store(config.store)
    with store_lock(config), RunRecord(store, flow="reindex", source=None, model=config.embedding.model) as run:
        shutil.rmtree(staging_uri, ignore_errors=True)  # what an interrupted reindex left
        try:
            staged = ingest(config_path=config_path, allow_mass_delete=True, store_uri=staging_uri)
        except QualityGateFailed as blocked:
            run.documents.update((blocked.report or {}).get("documents", {}))
            raise
        finally:
            keep_staging_run(run, staging_uri)
        staging = Store.from_uri(staging_uri)
        run.documents.update(staged["documents"])
        try:
            run.promotion = compare_indexes_task(config, store, staging_uri, allow_worse)
            if run.promotion["decision"] == "refused":
                raise PromotionRefused(promotion_line(run.promotion))
            run.before_publish()
            run.versions.update(store.replace_with(staging, run.run_id))
        finally:
            shutil.rmtree(staging_uri, ignore_errors=True)
        run.status = "published"
        run.chunks.update(embedded=staged["chunks"]["embedded"], reused=staged["chunks"]["reused"],
                          total=store.count("chunks"))
        return {**run.report(), "model": config.embedding.model}


def keep_staging_run(run: RunRecord, staging_uri: str) -> None:
    """Give `run` what the staging ingest recorded and the staging's deletion would lose:
    its quarantine records, its quality results and their outcome."""
    if not Path(staging_uri).is_dir():
        return
    staging = Store.from_uri(staging_uri)
    staged_runs = staging.runs(limit=1)  # the staging store is fresh: its one run is the nested ingest
    if not staged_runs:
        return
    staged_run = staged_runs[0]
    run.quarantine(quarantined_from_rows(staging.quarantine(staged_run["run_id"])))
    run.quality_results = staged_run["quality_results"]
    run.dq_success = staged_run["dq_success"]
