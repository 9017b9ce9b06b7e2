"""Commands that build, query and switch the index: init, ingest, search, status, reindex, rollback."""

from __future__ import annotations

from itertools import zip_longest
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from kbflow.cli.common import (
    EXIT_BLOCKED,
    EXIT_USAGE,
    ConfigOption,
    JsonOption,
    app,
    fail,
    print_json,
    progress_bars,
    reports_errors,
    stderr,
    stdout,
)
from kbflow.cli.server import flow_api
from kbflow.config import STARTER_CONFIG, ConfigError, RunnerConfig, SearchMode, load_config
from kbflow.errors import QualityGateFailed


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="where to write the config")] = Path("kbflow.toml"),
    force: Annotated[bool, typer.Option(help="overwrite an existing file")] = False,
) -> None:
    """Write a commented starter kbflow.toml."""
    if path.exists() and not force:
        raise fail(f"{path} exists; pass --force to overwrite it")
    path.write_text(STARTER_CONFIG, encoding="utf-8")
    stderr.print(f"wrote {path}; edit [bold]\\[\\[sources]][/] then run `kbflow ingest --config {path}`")


def _runner_option(value: str | None) -> str | None:
    """`--runner KIND[=ADDRESS]`: a bad kind is a usage error (exit 2), before anything starts."""
    if value is not None:
        try:
            RunnerConfig().with_option(value)
        except ConfigError as error:
            raise typer.BadParameter(str(error)) from None
    return value


@app.command()
@reports_errors
def ingest(
    config: ConfigOption = Path("kbflow.toml"),
    source: Annotated[str | None, typer.Option(help="ingest only this source")] = None,
    allow_mass_delete: Annotated[
        bool, typer.Option("--allow-mass-delete", help="let a source lose more than quality.max_deleted_share")
    ] = False,
    runner: Annotated[
        str | None,
        typer.Option(help="where parse/chunk/embed run: default, dask[=ADDRESS] or ray[=ADDRESS]", callback=_runner_option),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Bring the index up to date with the sources: only what changed is processed."""
    loaded = load_config(config)
    loaded.select_sources(source)  # fail fast, before Prefect starts
    api = flow_api(loaded, quiet=as_json)
    from kbflow.flows.ingest import ingest as ingest_flow

    try:
        with progress_bars(enabled=not as_json):
            api.ready()
            report = ingest_flow(
                config_path=str(config.resolve()), source=source, allow_mass_delete=allow_mass_delete, runner=runner
            )
    except QualityGateFailed as blocked:
        print_run_report(blocked.blocked_report(), as_json)
        raise fail(str(blocked), EXIT_BLOCKED) from None
    print_run_report(report, as_json)


@app.command()
@reports_errors
def search(
    query: Annotated[str | None, typer.Argument(help="what to search for")] = None,
    config: ConfigOption = Path("kbflow.toml"),
    k: Annotated[int, typer.Option("--k", min=1, max=1000, help="hits per query")] = 10,
    tenant: Annotated[str | None, typer.Option(help="only this tenant's chunks")] = None,
    mode: Annotated[SearchMode | None, typer.Option(help="vector | fts | hybrid (default: [search] mode, hybrid)")] = None,
    queries: Annotated[Path | None, typer.Option(help="JSONL file of {\"query\" (or \"question\"): ...} lines")] = None,
    as_json: JsonOption = False,
) -> None:
    """Search the index by meaning (vector), keywords (fts) or both (hybrid)."""
    from kbflow.queries import read_queries
    from kbflow.search import search as search_index

    if (query is None) == (queries is None):
        raise fail("give either a QUERY or --queries FILE.jsonl", EXIT_USAGE)
    if query is not None and not query.strip():
        raise fail("the QUERY is empty; give the text to search for", EXIT_USAGE)
    texts = [query] if query is not None else [q.query for q in read_queries(queries, require_relevant=False)]
    settings = load_config(config)
    results = search_index(settings, texts, k=k, tenant=tenant, mode=mode)
    if tenant is not None and not any(results):
        warn_unknown_tenant(settings, tenant)
    if queries is None and as_json:
        print_json(results[0])
        return
    for text, hits in zip(texts, results):
        if as_json:
            print_json({"query": text, "hits": hits})
        else:
            print_hits(text, hits)


def warn_unknown_tenant(settings: Any, tenant: str) -> None:
    """No hit for a tenant the index does not hold is most often a typo: say so on stderr."""
    from kbflow.store import Store

    known = sorted({t for t in Store.existing(settings.store).chunks(["tenant"]).column("tenant").to_pylist()
                    if t is not None})
    if tenant in known:
        return  # a real tenant with nothing matching (an fts query without its terms)
    stderr.print(
        f"[yellow]warning:[/] no chunk has tenant {escape(repr(tenant))}; "
        f"the index holds {escape(', '.join(known)) or 'no tenants'}",
        highlight=False, soft_wrap=True,
    )


@app.command()
@reports_errors
def status(config: ConfigOption = Path("kbflow.toml"), as_json: JsonOption = False) -> None:
    """What the index holds now and how the last run went."""
    from kbflow.quarantine import quarantine_counts, quarantine_phrase
    from kbflow.runs import decoded_run
    from kbflow.store import Store

    store = Store.existing(load_config(config).store)
    runs, set_aside = store.runs(limit=1), store.quarantine()
    summary = {
        "documents": store.count("documents", "status = 'active'"),
        "chunks": store.count("chunks"),
        "quarantined": len(set_aside),  # records: items set aside, each once however many runs saw it
        # the units of those records: documents with one, and chunks (one document, two chunks: 1 and 2)
        "quarantined_units": quarantine_counts(set_aside),
        "last_run": decoded_run(runs[0]) if runs else None,
    }
    # byte-identical documents of a source, indexed once: as the last run that discovered found them
    summary["duplicates"] = ((summary["last_run"] or {}).get("documents") or {}).get("duplicate", 0)
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"kbflow store {store.uri}", show_header=False)
    for key in ("documents", "chunks"):
        table.add_row(key, str(summary[key]))
    table.add_row("quarantined", quarantine_phrase(summary["quarantined_units"]))
    table.add_row("duplicates", str(summary["duplicates"]))
    last = summary["last_run"]
    if last:
        table.add_row("last run", f"{last['run_id']} ({last['status']}, {last['duration_s']:.1f} s)")
    stdout.print(table)


@app.command()
@reports_errors
def reindex(
    config: ConfigOption = Path("kbflow.toml"),
    allow_worse: Annotated[bool, typer.Option(
        "--allow-worse", help="switch even when [evaluation] queries lose more than max_mrr_drop of MRR@10")] = False,
    as_json: JsonOption = False,
) -> None:
    """Re-embed everything with the configured model; switch search to it only if it passes DQ
    and the [evaluation] queries do not score worse on it."""
    api = flow_api(load_config(config), quiet=as_json)
    from kbflow.flows.reindex import reindex as reindex_flow

    try:
        with progress_bars(enabled=not as_json):
            api.ready()
            report = reindex_flow(config_path=str(config.resolve()), allow_worse=allow_worse)
    except QualityGateFailed as blocked:
        print_run_report(blocked.blocked_report(), as_json)
        raise fail(f"{blocked}; the index was not switched", EXIT_BLOCKED) from None
    print_run_report(report, as_json)
    if "promotion" in report and not as_json:
        from kbflow.runs import promotion_line

        stdout.print(f"reindex {promotion_line(report['promotion'])}", highlight=False)


@app.command()
@reports_errors
def rollback(
    config: ConfigOption = Path("kbflow.toml"),
    to: Annotated[str | None, typer.Option("--to", help="run id to return to (default: the one before the last)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Restore the index (chunks + documents) to what an earlier run published."""
    api = flow_api(load_config(config), quiet=as_json)
    from kbflow.flows.rollback import rollback as rollback_flow

    api.ready()
    report = rollback_flow(config_path=str(config.resolve()), to_run=to)
    if as_json:
        print_json(report)
    else:
        stdout.print(f"restored the index to run {report['restored_run_id']} as run {report['run_id']}: "
                     f"{report['chunks']['total']} chunks")


def print_run_report(report: dict[str, Any], as_json: bool) -> None:
    """An ingest or reindex report: documents and chunks side by side, or JSON; warnings on stderr."""
    for warning in report.get("warnings", []):
        stderr.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    if as_json:
        print_json(report)
        return
    table = Table(title=f"ingest {report.get('run_id', '')}: {report.get('status')}")
    table.add_column("documents")
    table.add_column("", justify="right")
    table.add_column("chunks")
    table.add_column("", justify="right")
    documents, chunks = report.get("documents", {}), report.get("chunks", {})
    for (d_key, d_value), (c_key, c_value) in zip_longest(documents.items(), chunks.items(), fillvalue=("", "")):
        table.add_row(d_key, str(d_value), c_key, str(c_value))
    stdout.print(table)
    if any((report.get("quarantined") or {}).values()):  # the documents column counts documents: name both units
        from kbflow.quarantine import quarantine_phrase  # pyarrow: imported when used, for start-up cost

        stdout.print(f"quarantined: {quarantine_phrase(report['quarantined'])}"
                     f" (kbflow quarantine --run {report.get('run_id', '')})")
    if "duration_s" in report:
        stdout.print(f"took {report['duration_s']:.1f} s")


def print_hits(query: str, hits: list[dict[str, Any]]) -> None:
    table = Table(title=f"search: {query}", show_lines=True)
    for column in ("#", "score", "source / uri", "text"):
        table.add_column(column)
    for rank, hit in enumerate(hits, start=1):
        snippet = " ".join(hit["text"].split())[:300]
        table.add_row(str(rank), f"{hit['score']:.3f}", f"{hit['source']}\n{hit['uri']}", snippet)
    stdout.print(table)
