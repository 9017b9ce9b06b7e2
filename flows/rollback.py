"""The `rollback` flow: put the index back to the state an earlier run published.

What is loaded: nothing new. `chunks` and `documents` are restored to the LanceDB
versions tagged with the target run (one commit each, so readers see the old
state or the new one, never a mix), under the store's writer lock. The rollback
is a run of its own, recorded and tagged like any other; rolling back again
undoes it. The next `ingest` compares the sources with the restored `documents` table and
brings the index forward again, reusing every vector the restored chunks hold; at
its first change it also re-chunks every document once, because the boilerplate
state is dropped here (the restored chunks may have been made with another set), and so are
sql sources' cursors: the next ingest reads their rows in full once.
"""

from __future__ import annotations

from prefect import flow

from kbflow.config import load_config
from kbflow.errors import NotFound
from kbflow.lock import store_lock
from kbflow.runs import RunRecord
from kbflow.store import Store
from kbflow.tasks.index.boilerplate import forget_line_hashes
from kbflow.tasks.sources.sql_cursor import forget_cursors


@flow(name="rollback")
def rollback(config_path: str, to_run: str | None = None) -> dict:
    """Restore the index to what `to_run` published (default: the run before the last publish)."""
    config = load_config(config_path)
    store = Store(config.store)
    with store_lock(config), RunRecord(store, flow="rollback", source=None, model=config.embedding.model) as run:
        published = [r["run_id"] for r in store.published_runs()]
        if to_run is None and len(published) < 2:
            raise NotFound("nothing to roll back to: fewer than two runs have published")
        run.parent_run_id = to_run or published[1]
        versions = store.restore(run.parent_run_id, run.run_id)
        forget_line_hashes(store)
        forget_cursors(store)  # the restored documents are older than the cursors: read sql sources in full
        run.status = "published"
        run.versions.update(versions)
        run.documents["unchanged"] = store.count("documents")
        run.chunks["total"] = store.count("chunks")
        return {**run.report(), "restored_run_id": run.parent_run_id}
