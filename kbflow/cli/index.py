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
    PrincipalOption,
    app,
    fail,
    print_json,
    reports_errors,
    stderr,
    stdout,
)
from kbflow.cli import served
from kbflow.cli.server import flow_api
from kbflow.client import CommandBlocked
from kbflow.config import STARTER_CONFIG, ConfigError, RunnerConfig, SearchMode, load_config


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
    load_config(config).select_sources(source)  # fail fast, before Prefect or a service starts
    arguments = {"source": source, "allow_mass_delete": allow_mass_delete, "runner": runner}
    try:
        # A Dask or Ray cluster stays bound to the command's own process.
        report = served.run("ingest", config, arguments, as_json=as_json, flows=True, here=runner is not None)
    except CommandBlocked as blocked:
        print_run_report(blocked.report or {}, as_json)
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
    principal: PrincipalOption = None,
    as_json: JsonOption = False,
) -> None:
    """Search the index by meaning (vector), keywords (fts) or both (hybrid)."""
    from kbflow.queries import read_queries

    if (query is None) == (queries is None):
        raise fail("give either a QUERY or --queries FILE.jsonl", EXIT_USAGE)
    if query is not None and not query.strip():
        raise fail("the QUERY is empty; give the text to search for", EXIT_USAGE)
    texts = [query] if query is not None else [q.query for q in read_queries(queries, require_relevant=False)]
    # fts needs no model: a running service answers it, none is started for it.
    answer = served.run("search", config, {"texts": texts, "k": k, "tenant": tenant, "mode": mode,
                                          "principals": principal},
                        autostart=(mode or load_config(config).search.mode) != "fts")
    if answer["warning"]:
        stderr.print(f"[yellow]warning:[/] {escape(answer['warning'])}", highlight=False, soft_wrap=True)
    results = answer["results"]
    if queries is None and as_json:
        print_json(results[0])
        return
    for text, hits in zip(texts, results):
        if as_json:
            print_json({"query": text, "hits": hits})
        else:
            print_hits(text, hits)


@app.command()
@reports_errors
def status(config: ConfigOption = Path("kbflow.toml"), as_json: JsonOption = False) -> None:
    """What the index holds now and how the last run went."""
    from kbflow.quarantine import quarantine_phrase

    summary = served.run("status", config, {})
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"kbflow store {load_config(config).store.uri}", show_header=False)
    for key in ("documents", "chunks"):
        table.add_row(key, str(summary[key]))
    table.add_row("quarantined", quarantine_phrase(summary["quarantined_units"]))
    table.add_row("duplicates", str(summary["duplicates"]))
    acl = summary["access"]
    table.add_row("access", f"{acl['mode']}: {acl['public']} public, {acl['restricted']} restricted, "
                            f"{acl['missing']} without an ACL")
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
    try:
        report = served.run("reindex", config, {"allow_worse": allow_worse}, as_json=as_json, flows=True)
    except CommandBlocked as blocked:
        print_run_report(blocked.report or {}, as_json)
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
    # Indexed text is data, not Rich markup: "[backup]" in a TOML sample must print as written.
    table = Table(title=f"search: {escape(query)}", show_lines=True)
    for column in ("#", "score", "source / uri", "text"):
        table.add_column(column)
    for rank, hit in enumerate(hits, start=1):
        snippet = " ".join(hit["text"].split())[:300]
        table.add_row(str(rank), f"{hit['score']:.3f}", escape(f"{hit['source']}\n{hit['uri']}"), escape(snippet))
    stdout.print(table)
