"""What each served command does, once: the kbflow service runs these for its clients, and the CLI runs
the same functions in its own process when no service runs.

Each takes the config's path and the command's arguments (JSON values: what the client sends) and
returns the command's `--json` result. Failures a user can act on end as `CommandFailed` or
`CommandBlocked` (kbflow.client), whatever side ran them; `user_message` says which other errors are
the user's (a one-line message) and which are defects (an internal error, traceback in the log).
Heavy modules (flows, Prefect, GX, the model) are imported inside the operations, for start-up cost:
the CLI imports this module before it knows whether a service will run the command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kbflow.client import CommandBlocked
from kbflow.config import load_config
from kbflow.errors import KbflowError, NotFound


@dataclass
class Context:
    """What an operation needs from whoever runs it: notes for the user, and the Prefect API made ready."""

    note: Callable[[str], None] = lambda text: None
    ready: Callable[[], None] = lambda: None  # blocks until the flows' Prefect API answers
    environ: dict[str, str] = field(default_factory=dict)


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message is the whole story for a user: printed as one line, no traceback.

    kbflow's own (KbflowError), and the standard library's errors about a path the user named
    (missing, taken, not allowed), whose message names that path.
    """
    return (KbflowError, FileNotFoundError, FileExistsError, PermissionError, NotADirectoryError, IsADirectoryError)


def user_message(error: BaseException) -> str | None:
    """The one-line message of a user's error; None for anything else (a defect: keep its traceback)."""
    return str(error) if isinstance(error, user_errors()) else None


# -- commands that run flows ----------------------------------------------------------------------


def ingest(config_path: str, arguments: dict[str, Any], context: Context) -> dict[str, Any]:
    """`kbflow ingest --json`: the run report."""
    from kbflow.errors import QualityGateFailed

    load_config(config_path).select_sources(arguments.get("source"))  # fail fast, before Prefect
    from kbflow.flows.ingest import ingest as ingest_flow

    context.ready()
    try:
        return ingest_flow(config_path=config_path, source=arguments.get("source"),
                           allow_mass_delete=bool(arguments.get("allow_mass_delete")), runner=arguments.get("runner"))
    except QualityGateFailed as blocked:
        raise CommandBlocked(str(blocked), blocked.blocked_report(), blocked.failure_dicts()) from None


def reindex(config_path: str, arguments: dict[str, Any], context: Context) -> dict[str, Any]:
    """`kbflow reindex --json`: the run report."""
    from kbflow.errors import QualityGateFailed
    from kbflow.flows.reindex import reindex as reindex_flow

    context.ready()
    try:
        return reindex_flow(config_path=config_path, allow_worse=bool(arguments.get("allow_worse")))
    except QualityGateFailed as blocked:
        raise CommandBlocked(str(blocked), blocked.blocked_report(), blocked.failure_dicts()) from None


def evaluate(config_path: str, arguments: dict[str, Any], context: Context) -> dict[str, Any]:
    """`kbflow evaluate --json`: the metrics report (notes on the way: generated questions used)."""
    from kbflow.flows.evaluate import evaluate as evaluate_flow
    from kbflow.flows.evaluate import resolve_inputs, uses_generated
    from kbflow.queries import read_queries

    loaded = load_config(config_path)
    tune, generated = bool(arguments.get("tune")), bool(arguments.get("generated"))
    inputs = {"queries": arguments.get("queries"), "dataset": arguments.get("dataset")}
    if not generated and uses_generated(loaded, **inputs, tune=tune, generated=generated):
        generated = True
        context.note("note: no labeled queries; tuning on questions made from the index's headings")
    queries_path, _ = resolve_inputs(loaded, **inputs, generated=generated)
    if queries_path is not None:
        read_queries(queries_path)  # a bad line fails here, before Prefect starts
    context.ready()
    return evaluate_flow(config_path=config_path, k=arguments.get("k"), mode=arguments.get("mode", "all"),
                         tune=tune, generated=generated, principals=arguments.get("principals"), **inputs)


def dataset_build(config_path: str, arguments: dict[str, Any], context: Context) -> dict[str, Any]:
    """`kbflow dataset build --json`: the dataset's report."""
    from kbflow.errors import QualityGateFailed

    loaded = load_config(config_path)
    if arguments.get("source") is not None:
        loaded.source(arguments["source"])
    from kbflow.flows.build_dataset import build_dataset

    context.ready()
    try:
        return build_dataset(config_path=config_path, kind=arguments["kind"], source=arguments.get("source"),
                             out_dir=arguments.get("out"), principals=arguments.get("principals"))
    except QualityGateFailed as blocked:
        raise CommandBlocked(str(blocked), None, blocked.failure_dicts()) from None


# -- commands that read ---------------------------------------------------------------------------


def search(config_path: str, arguments: dict[str, Any], context: Context) -> dict[str, Any]:
    """`kbflow search`: `{"results": [hits per text], "warning": a line for stderr or None}`."""
    from kbflow.search import search as search_index

    settings = load_config(config_path)
    tenant = arguments.get("tenant")
    results = search_index(settings, arguments["texts"], k=int(arguments.get("k", 10)), tenant=tenant,
                           mode=arguments.get("mode"), principals=arguments.get("principals"))
    warning = unknown_tenant(settings, tenant) if tenant is not None and not any(results) else None
    return {"results": results, "warning": warning}


def unknown_tenant(settings: Any, tenant: str) -> str | None:
    """No hit for a tenant the index does not hold is most often a typo: the line that says so."""
    from kbflow.store import Store

    known = sorted({t for t in Store.existing(settings.store).chunks(["tenant"]).column("tenant").to_pylist()
                    if t is not None})
    if tenant in known:
        return None  # a real tenant with nothing matching (an fts query without its terms)
    return f"no chunk has tenant {tenant!r}; the index holds {', '.join(known) or 'no tenants'}"


def _store(config_path: str):
    from kbflow.store import Store

    return Store.existing(load_config(config_path).store)


def status(config_path: str, arguments: dict[str, Any], context: Context) -> dict[str, Any]:
    """`kbflow status --json`."""
    from kbflow.access import acl_counts
    from kbflow.quarantine import quarantine_counts
    from kbflow.runs import decoded_run
    from kbflow.store import ACTIVE, Store

    settings = load_config(config_path)
    store = Store.existing(settings.store)
    runs, set_aside = store.runs(limit=1), store.quarantine()
    active = store.documents(rows=ACTIVE) if store.has("documents") else None
    summary = {
        "documents": 0 if active is None else active.num_rows,
        "chunks": store.count("chunks"),
        "quarantined": len(set_aside),  # records: items set aside, each once however many runs saw it
        # the units of those records: documents with one, and chunks (one document, two chunks: 1 and 2)
        "quarantined_units": quarantine_counts(set_aside),
        "last_run": decoded_run(runs[0]) if runs else None,
        # active documents by ACL (kbflow.access); "missing": none, so visible to nobody when enforced
        "access": {"mode": settings.access.mode,
                   **acl_counts(store.documents().slice(0, 0) if active is None else active, settings.access)},
    }
    # byte-identical documents of a source, indexed once: as the last run that discovered found them
    summary["duplicates"] = ((summary["last_run"] or {}).get("documents") or {}).get("duplicate", 0)
    return summary


def runs(config_path: str, arguments: dict[str, Any], context: Context) -> list[dict[str, Any]]:
    """`kbflow runs --json`."""
    from kbflow.runs import decoded_run

    return [decoded_run(run) for run in _store(config_path).runs(limit=int(arguments.get("limit", 20)))]


def find_run(store, run_id: str | None) -> dict[str, Any]:
    """The run `run_id`, or the last one; a message naming what to do when there is none."""
    if run_id is not None:
        found = store.run(run_id)
        if found is None:
            raise NotFound(f"no run {run_id!r}; `kbflow runs` lists them")
        return found
    latest = store.runs(limit=1)
    if not latest:
        raise NotFound(f"no runs recorded in {store.uri} yet; run `kbflow ingest` first")
    return latest[0]


def quality(config_path: str, arguments: dict[str, Any], context: Context) -> dict[str, Any]:
    """`kbflow quality --json`: `{"summary": the contract, "record": the run}` (the table shows its status)."""
    from kbflow.runs import quality_summary

    record = find_run(_store(config_path), arguments.get("run"))
    return {"summary": quality_summary(record), "record": record}


def quarantine(config_path: str, arguments: dict[str, Any], context: Context) -> list[dict[str, Any]]:
    """`kbflow quarantine --json`, newest first."""
    rows = _store(config_path).quarantine(arguments.get("run"))
    return sorted(rows, key=lambda r: r["quarantined_at"], reverse=True)


def trace(config_path: str, arguments: dict[str, Any], context: Context) -> dict[str, Any]:
    """`kbflow trace --json`."""
    from kbflow.lineage import trace_chunk

    return trace_chunk(load_config(config_path), arguments["chunk_id"])


Operation = Callable[[str, dict[str, Any], Context], Any]
FLOW_OPERATIONS: dict[str, Operation] = {
    "ingest": ingest, "reindex": reindex, "evaluate": evaluate, "dataset-build": dataset_build,
}
READ_OPERATIONS: dict[str, Operation] = {
    "search": search, "status": status, "runs": runs, "quality": quality, "quarantine": quarantine, "trace": trace,
}
OPERATIONS = {**FLOW_OPERATIONS, **READ_OPERATIONS}

