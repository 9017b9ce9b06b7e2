"""The `kbflow` command line: tables for people, `--json` for machines.

Exit codes: 0 success, 1 an error with a message on stderr, 2 a usage error,
3 a data-quality gate blocked the publish. With `--json`, stdout carries only JSON.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from itertools import zip_longest
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from kbflow.config import STARTER_CONFIG, ConfigError, load_config

EXIT_ERROR, EXIT_BLOCKED = 1, 3

app = typer.Typer(
    name="kbflow",
    help="A data pipeline for RAG and fine-tuning: checked, traceable, always current.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
stdout = Console()
stderr = Console(stderr=True)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", envvar="KBFLOW_CONFIG", help="path to kbflow.toml")
]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON only, for machines")]


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    stderr.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _known_errors() -> tuple[type[Exception], ...]:
    from kbflow.errors import ModelMismatch
    from kbflow.models import ModelNotAvailable
    from kbflow.store import StoreEmpty

    return (ConfigError, ModelMismatch, ModelNotAvailable, StoreEmpty, FileNotFoundError, LookupError, ValueError)


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="where to write the config")] = Path("kbflow.toml"),
    force: Annotated[bool, typer.Option(help="overwrite an existing file")] = False,
) -> None:
    """Write a commented starter kbflow.toml."""
    if path.exists() and not force:
        raise _fail(f"{path} exists; pass --force to overwrite it")
    path.write_text(STARTER_CONFIG, encoding="utf-8")
    stderr.print(f"wrote {path}; edit [bold][[sources]][/] then run `kbflow ingest --config {path}`")


def _runner_option(value: str | None) -> str | None:
    """`--runner KIND[=ADDRESS]`: a bad kind is a usage error (exit 2), before anything starts."""
    if value is not None:
        from kbflow.config import RunnerConfig

        try:
            RunnerConfig().with_option(value)
        except ConfigError as error:
            raise typer.BadParameter(str(error)) from None
    return value


@app.command()
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
    from kbflow.errors import QualityGateFailed

    try:
        load_config(config).select_sources(source)  # fail fast, before Prefect starts
        from flows.ingest import ingest as ingest_flow

        with _progress(enabled=not as_json):
            report = ingest_flow(
                config_path=str(config.resolve()), source=source, allow_mass_delete=allow_mass_delete, runner=runner
            )
    except QualityGateFailed as blocked:
        _print_ingest(blocked.blocked_report(), as_json)
        raise _fail(str(blocked), EXIT_BLOCKED) from None
    except _known_errors() as error:
        raise _fail(str(error)) from None
    _print_ingest(report, as_json)


@app.command()
def search(
    query: Annotated[str | None, typer.Argument(help="what to search for")] = None,
    config: ConfigOption = Path("kbflow.toml"),
    k: Annotated[int, typer.Option("--k", min=1, max=1000, help="hits per query")] = 10,
    tenant: Annotated[str | None, typer.Option(help="only this tenant's chunks")] = None,
    mode: Annotated[str, typer.Option(help="vector | fts | hybrid")] = "vector",
    queries: Annotated[Path | None, typer.Option(help="JSONL file of {\"query\": ...} lines")] = None,
    as_json: JsonOption = False,
) -> None:
    """Search the index by meaning (vector), keywords (fts) or both (hybrid)."""
    from kbflow.search import search as search_index

    if (query is None) == (queries is None):
        raise _fail("give either a QUERY or --queries FILE.jsonl")
    try:
        texts = [query] if query is not None else _read_queries(queries)
        results = search_index(load_config(config), texts, k=k, tenant=tenant, mode=mode)
    except _known_errors() as error:
        raise _fail(str(error)) from None
    if queries is not None:
        for text, hits in zip(texts, results):
            if as_json:
                _print_json({"query": text, "hits": hits})
            else:
                _print_hits(text, hits)
    elif as_json:
        _print_json(results[0])
    else:
        _print_hits(query, results[0])


def _read_queries(path: Path) -> list[str]:
    texts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            texts.append(str(json.loads(line)["query"]))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{path}:{number}: expected a JSON object with a \"query\" ({error})") from None
    return texts


@app.command()
def status(config: ConfigOption = Path("kbflow.toml"), as_json: JsonOption = False) -> None:
    """What the index holds now and how the last run went."""
    from kbflow.store import Store

    try:
        store = Store(load_config(config).store)
    except _known_errors() as error:
        raise _fail(str(error)) from None
    runs = store.runs(limit=1)
    summary = {
        "documents": store.count("documents", "status = 'active'"),
        "chunks": store.count("chunks"),
        "quarantined": store.count("quarantine"),
        "last_run": _decoded_run(runs[0]) if runs else None,
    }
    if as_json:
        _print_json(summary)
        return
    table = Table(title=f"kbflow store {store.uri}", show_header=False)
    for key in ("documents", "chunks", "quarantined"):
        table.add_row(key, str(summary[key]))
    last = summary["last_run"]
    if last:
        table.add_row("last run", f"{last['run_id']} ({last['status']}, {last['duration_s']:.1f} s)")
    stdout.print(table)


def _decoded_run(run: dict[str, Any]) -> dict[str, Any]:
    json_fields = ("stage_durations", "documents", "chunks", "dq_failures")
    return {k: (json.loads(v) if k in json_fields and v else v) for k, v in run.items()}


@app.command()
def reindex(config: ConfigOption = Path("kbflow.toml"), as_json: JsonOption = False) -> None:
    """Re-embed everything with the configured model; switch search to it only if it passes DQ."""
    from kbflow.errors import QualityGateFailed

    try:
        load_config(config)
        from flows.reindex import reindex as reindex_flow

        with _progress(enabled=not as_json):
            report = reindex_flow(config_path=str(config.resolve()))
    except QualityGateFailed as blocked:
        _print_ingest(blocked.blocked_report(), as_json)
        raise _fail(f"{blocked}; the index was not switched", EXIT_BLOCKED) from None
    except _known_errors() as error:
        raise _fail(str(error)) from None
    _print_ingest(report, as_json)


@app.command()
def serve(config: ConfigOption = Path("kbflow.toml")) -> None:
    """Run kbflow continuously: scheduled ingests, event-triggered ingests, on-demand reindex."""
    try:
        loaded = load_config(config)
        from flows.serve import serve_kbflow
    except _known_errors() as error:
        raise _fail(str(error)) from None
    if not os.environ.get("PREFECT_API_URL"):
        stderr.print("note: no PREFECT_API_URL; serving against a temporary local API. Event triggers need "
                     "a Prefect server: `prefect server start`, then export PREFECT_API_URL.")
    stderr.print(f"serving kbflow deployments for {config} (Ctrl-C to stop)")
    serve_kbflow(str(config.resolve()), loaded)


@app.command()
def watch(
    config: ConfigOption = Path("kbflow.toml"),
    source: Annotated[str | None, typer.Option(help="watch only this source")] = None,
    as_json: JsonOption = False,
) -> None:
    """Follow the sources: each change is ingested (or announced to `kbflow serve`) seconds later."""
    from kbflow.errors import QualityGateFailed
    from kbflow.watch import serves_change_trigger, watch as watch_sources

    try:
        loaded = load_config(config)
        loaded.select_sources(source)
        from flows.ingest import ingest as ingest_flow
        from flows.serve import SOURCE_CHANGED, source_resource
    except _known_errors() as error:
        raise _fail(str(error)) from None
    announce = serves_change_trigger()
    stderr.print(f"watching {config} ({'announcing changes to the Prefect API' if announce else 'ingesting here'})")

    def run_source(name: str | None) -> None:
        if announce:
            from prefect.events import emit_event

            for changed in [name] if name else [s.name for s in loaded.select_sources(source)]:
                emit_event(event=SOURCE_CHANGED, resource=source_resource(changed))
                stderr.print(f"announced {SOURCE_CHANGED} for {changed}")
            return
        try:
            report = ingest_flow(config_path=str(config.resolve()), source=name)
        except QualityGateFailed as blocked:
            report = blocked.blocked_report()
        except _known_errors() as error:
            stderr.print(f"[red]ingest of {name or 'all sources'} failed:[/] {error}")
            return
        if as_json:
            _print_json({"source": name, **report})
        else:
            d, c = report.get("documents", {}), report.get("chunks", {})
            stdout.print(f"{report.get('run_id')} {name or 'all'}: {report['status']}, documents "
                         f"+{d.get('new', 0)} ~{d.get('changed', 0)} -{d.get('deleted', 0)}, "
                         f"chunks embedded {c.get('embedded', 0)}, total {c.get('total', 0)}")
        sys.stdout.flush()

    import signal
    import threading

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # a service manager's stop: finish the tick, exit
    try:
        watch_sources(loaded, run_source, source, stop=stop)
    except KeyboardInterrupt:
        pass
    stderr.print("stopped watching")


@app.command()
def rollback(
    config: ConfigOption = Path("kbflow.toml"),
    to: Annotated[str | None, typer.Option("--to", help="run id to return to (default: the one before the last)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Restore the index (chunks + manifest) to what an earlier run published."""
    try:
        load_config(config)
        from flows.rollback import rollback as rollback_flow

        report = rollback_flow(config_path=str(config.resolve()), to_run=to)
    except _known_errors() as error:
        raise _fail(str(error)) from None
    if as_json:
        _print_json(report)
    else:
        stdout.print(f"restored the index to run {report['restored_run_id']} as run {report['run_id']}: "
                     f"{report['chunks']['total']} chunks")


RunOption = Annotated[str | None, typer.Option("--run", help="a run id (default: the last run)")]


def _open_store(config: Path):
    from kbflow.store import Store

    return Store(load_config(config).store)


def _find_run(store, run_id: str | None) -> dict[str, Any]:
    if run_id is not None:
        found = store.run(run_id)
        if found is None:
            raise ValueError(f"no run {run_id!r}; `kbflow runs` lists them")
        return found
    latest = store.runs(limit=1)
    if not latest:
        raise ValueError(f"no runs recorded in {store.uri} yet; run `kbflow ingest` first")
    return latest[0]


@app.command()
def quality(
    config: ConfigOption = Path("kbflow.toml"),
    run: RunOption = None,
    docs: Annotated[bool, typer.Option("--docs", help="print the path of the GX Data Docs index.html")] = False,
    as_json: JsonOption = False,
) -> None:
    """Data-quality results of the last (or given) run: every expectation, failures first."""
    from kbflow.store import Store
    from tasks.quality import data_docs_index

    try:
        loaded = load_config(config)
        if docs:  # one site for all runs' validations
            index = data_docs_index(loaded.quality.results_dir)
            if not index.is_file():
                raise ValueError(f"no Data Docs under {loaded.quality.results_dir} yet; run `kbflow ingest` first")
            sys.stdout.write(f"{index}\n")
            return
        store = Store(loaded.store)
        record = _find_run(store, run)
        summary = _quality_summary(record)
    except _known_errors() as error:
        raise _fail(str(error)) from None
    if as_json:
        _print_json(summary)
        return
    verdict = "[green]passed[/]" if summary["success"] else "[red]failures[/]"
    stdout.print(f"run {summary['run_id']} ({record['status']}): {verdict}")
    if not summary["suites"]:
        stdout.print("no checks ran in this run (nothing changed); `kbflow runs` lists earlier runs")
    for suite in summary["suites"]:
        table = Table(title=f"suite {suite['name']}", title_justify="left")
        for column in ("", "expectation", "column", "on failure", "unexpected", "examples"):
            table.add_column(column, overflow="fold")
        for e in suite["expectations"]:
            examples = "; ".join(f"{x.get('uri') or x.get('id')}: {x.get('value')}" for x in e["examples"][:3])
            table.add_row("✅" if e["success"] else "❌", e["type"].removeprefix("expect_"), e["column"] or "", e.get("on_failure", ""),
                          str(e["unexpected_count"]), examples or (str(e["observed"]) if e["observed"] is not None else ""))
        stdout.print(table)


def _quality_summary(run: dict[str, Any]) -> dict[str, Any]:
    path = run.get("quality_results")
    if not path or not Path(path).is_file():
        return {"run_id": run["run_id"], "success": bool(run.get("dq_success")), "suites": []}
    return json.loads(Path(path).read_text(encoding="utf-8"))


@app.command()
def quarantine(config: ConfigOption = Path("kbflow.toml"), run: RunOption = None, as_json: JsonOption = False) -> None:
    """What was set aside, where and why (all runs, or one)."""
    try:
        rows = sorted(_open_store(config).quarantine(run), key=lambda r: r["quarantined_at"], reverse=True)
    except _known_errors() as error:
        raise _fail(str(error)) from None
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"quarantine ({len(rows)})")
    for column in ("run", "source", "uri", "stage", "reason", "detail"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["run_id"], row["source"], row["uri"], row["stage"], row["reason"], (row["detail"] or "")[:120])
    stdout.print(table)


@app.command()
def trace(
    chunk_id: Annotated[str, typer.Argument(help="a chunk_id from search results")],
    config: ConfigOption = Path("kbflow.toml"),
    as_json: JsonOption = False,
) -> None:
    """Where a chunk comes from: document, source, the run that wrote it, the table version."""
    from kbflow.lineage import trace_chunk

    try:
        loaded = load_config(config)
        lineage = trace_chunk(loaded, chunk_id)
    except _known_errors() as error:
        raise _fail(str(error)) from None
    if as_json:
        _print_json(lineage)
        return
    for part in ("chunk", "document", "source", "run"):
        table = Table(title=part, show_header=False, title_justify="left")
        for key, value in (lineage[part] or {}).items():
            table.add_row(key, str(value))
        stdout.print(table)
    stdout.print(f"chunks table version: {lineage['table_version']}")


@app.command()
def runs(
    config: ConfigOption = Path("kbflow.toml"),
    limit: Annotated[int, typer.Option(min=1, help="newest N runs")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Run history: counts, durations per stage, data-quality outcome."""
    try:
        history = [_decoded_run(run) for run in _open_store(config).runs(limit=limit)]
    except _known_errors() as error:
        raise _fail(str(error)) from None
    if as_json:
        _print_json(history)
        return
    table = Table(title="runs, newest first")
    for column in ("run", "flow", "status", "DQ", "documents n/c/u/d/q", "chunks e/r/d/total", "seconds", "slowest stage"):
        table.add_column(column, overflow="fold", no_wrap=column in {"flow", "status", "DQ"})
    for run in history:
        d, c, stages = run["documents"] or {}, run["chunks"] or {}, run["stage_durations"] or {}
        slowest = max(stages.items(), key=lambda item: item[1], default=("", 0))
        table.add_row(
            run["run_id"], run["flow"], run["status"], "✅" if run["dq_success"] else "❌",
            "/".join(str(d.get(k, 0)) for k in ("new", "changed", "unchanged", "deleted", "quarantined")),
            "/".join(str(c.get(k, 0)) for k in ("embedded", "reused", "deleted", "total")),
            f"{run['duration_s']:.1f}", f"{slowest[0]} {slowest[1]:.1f}s" if slowest[0] else "",
        )
    stdout.print(table)


# -- datasets (kbflow dataset build / check) ---------------------------------------------

EXIT_STALE = 4
dataset_app = typer.Typer(help="Fine-tuning datasets in Parquet: build them, check them for stale rows.",
                          no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("build")
def dataset_build(
    kind: Annotated[str, typer.Option("--kind", help="embedding-pairs | reranker | sft | raft")],
    config: ConfigOption = Path("kbflow.toml"),
    source: Annotated[str | None, typer.Option(help="only this source (a labeled one for sft/raft)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="parent folder (default datasets.out_dir)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Build a dataset into OUT/KIND: data/{train,validation,test}-*.parquet, README.md, manifest.json."""
    from kbflow.errors import QualityGateFailed
    from tasks.datasets import check_kind
    from tasks.llm import LlmUnavailable

    try:
        loaded = load_config(config)  # fail fast, before Prefect starts
        check_kind(kind)
        if source is not None:
            loaded.source(source)
        from flows.build_dataset import build_dataset

        with _progress(enabled=not as_json):
            report = build_dataset(config_path=str(config.resolve()), kind=kind, source=source,
                                   out_dir=str(out.resolve()) if out else None)
    except QualityGateFailed as blocked:
        if as_json:
            _print_json({"kind": kind, "status": "blocked", "failures": blocked.failure_dicts()})
        raise _fail(f"{blocked}; no dataset was written", EXIT_BLOCKED) from None
    except (*_known_errors(), LlmUnavailable) as error:
        raise _fail(str(error)) from None
    if as_json:
        _print_json(report)
        return
    stdout.print(f"dataset {report['kind']}: {report['dir']}", highlight=False, soft_wrap=True)
    table = Table()
    for column in ("split", "rows"):
        table.add_column(column)
    for split, rows in report["rows"].items():
        table.add_row(split, str(rows))
    stdout.print(table)
    dropped = ", ".join(f"{step} {n}" for step, n in report["dropped"].items() if n) or "none"
    pii = ", ".join(f"{kind} {n}" for kind, n in report["pii"].items()) or "none"
    failed = [e["check"] or e["type"] for e in report["checks"]["expectations"] if not e["success"]]
    stdout.print(f"dropped: {dropped}\nPII found: {pii}\nchecks: {'all passed' if not failed else ', '.join(failed)}")


@dataset_app.command("check")
def dataset_check(
    path: Annotated[Path, typer.Argument(help="a built dataset folder, DIR/KIND")],
    config: ConfigOption = Path("kbflow.toml"),
    as_json: JsonOption = False,
) -> None:
    """Report rows whose source chunk or document was deleted or changed since the build (exit 4 if any)."""
    from tasks.datasets import find_stale_rows

    try:
        report = find_stale_rows(path, load_config(config))
    except _known_errors() as error:
        raise _fail(str(error)) from None
    if as_json:
        _print_json(report)
    else:
        stdout.print(f"{path}: {report['stale']} of {report['rows']} rows stale "
                     f"({report['deleted']} deleted, {report['changed']} changed)")
        for example in report["examples"]:
            stdout.print(f"  {example['split']} {example['id']}: {example['reason']} (doc {example['doc_id']})")
    if report["stale"]:
        if not as_json:
            stderr.print("rebuild it with `kbflow dataset build` to bring it up to date with the index")
        raise typer.Exit(EXIT_STALE)


# -- evaluation (kbflow eval) --------------------------------------------------------------


@app.command("eval")
def eval_(
    config: ConfigOption = Path("kbflow.toml"),
    queries: Annotated[Path | None, typer.Option(
        help="JSONL of {\"query\" (or \"question\"), \"relevant\": [ids]}; default: [evaluation] queries")] = None,
    k: Annotated[int | None, typer.Option("--k", min=1, max=1000, help="recall@k cut-off; default: [evaluation] k")] = None,
    mode: Annotated[str, typer.Option(help="vector | fts | hybrid | all")] = "all",
    dataset: Annotated[Path | None, typer.Option(help="evaluate on the test split of DIR/embedding-pairs")] = None,
    tune: Annotated[bool, typer.Option("--tune", help="grid-search hybrid fusion and weight; print [search] lines")] = False,
    as_json: JsonOption = False,
) -> None:
    """Retrieval metrics (hit@k, recall, MRR, nDCG) per mode and source for labeled queries."""
    from flows.evaluate import EVAL_MODES, resolve_inputs
    from tasks.evaluate import read_queries

    if mode not in EVAL_MODES:
        raise _fail(f"unknown --mode {mode!r}; use one of {', '.join(EVAL_MODES)}", 2)
    if queries is not None and dataset is not None:
        raise _fail("give --queries or --dataset, not both", 2)
    try:
        inputs = {"queries": str(queries) if queries else None, "dataset": str(dataset) if dataset else None}
        queries_path, _ = resolve_inputs(load_config(config), **inputs)
        if queries_path is not None:
            read_queries(queries_path)  # a bad line fails here, before Prefect starts
        from flows.evaluate import evaluate as evaluate_flow

        with _progress(enabled=not as_json):
            report = evaluate_flow(config_path=str(config.resolve()), k=k, mode=mode, tune=tune, **inputs)
    except _known_errors() as error:
        from rich.markup import escape

        raise _fail(escape(str(error))) from None  # messages name `[evaluation] queries`: not markup
    if report.get("unresolved"):
        stderr.print(f"note: {report['unresolved']} relevant id(s) match no indexed document or chunk "
                     f"(listed in {report['results']})")
    if tune:
        best = report["tuned"]
        stderr.print(f"best hybrid fusion on these queries; to use it, put in {config}:\n{best['config']}",
                     highlight=False, markup=False)
    if as_json:
        _print_json(report)
    else:
        _print_eval(report)


def _print_eval(report: dict[str, Any]) -> None:
    from tasks.evaluate import METRIC_NAMES

    names = [name.format(k=report["k"]) for name in METRIC_NAMES]
    table = Table(title=f"eval {report['run_id']} ({report['label']})")
    table.add_column("mode")
    table.add_column("source")
    for name in names:
        table.add_column(name, justify="right")
    rows = [(mode, "all", scores) for mode, scores in report["modes"].items()]
    if report.get("tuned"):
        tuned = report["tuned"]
        rows.append((f"tuned: {tuned['fusion']} {tuned['weight']:g}", "all", tuned["metrics"]))
    for mode, scores in report["modes"].items():
        per_source = scores.get("per_source", {})
        if len(per_source) > 1:
            rows += [(mode, source, metrics) for source, metrics in per_source.items()]
    for mode, source, scores in rows:
        table.add_row(mode, source, *(f"{scores[n]:.3f}" if n != "n" else str(scores[n]) for n in names))
    stdout.print(table)
    stdout.print(f"results: {report['results']}\nchart: {report['chart']}", highlight=False)


# -- fine-tuning (kbflow finetune) ---------------------------------------------------------


@app.command()
def finetune(
    config: ConfigOption = Path("kbflow.toml"),
    dataset: Annotated[Path, typer.Option(help="an embedding-pairs dataset folder (DIR/embedding-pairs)")] = ...,
    out: Annotated[Path, typer.Option(help="a new folder for the tuned model")] = ...,
    epochs: Annotated[int | None, typer.Option(min=1, help="default: finetune.epochs of the config")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", min=1, help="stop after N steps (default: finetune.max_steps)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Fine-tune the embedding model on built pairs; report base vs tuned retrieval on the test split."""
    try:
        load_config(config)
        from tasks.finetune import check_out_dir, read_pairs, retrieval_set

        check_out_dir(out.resolve())
        retrieval_set(read_pairs(dataset))  # a missing or wrong dataset fails here, before Prefect and torch
        from flows.finetune import finetune as finetune_flow

        with _progress(enabled=not as_json):
            report = finetune_flow(config_path=str(config.resolve()), dataset=str(dataset.resolve()),
                                   out=str(out.resolve()), epochs=epochs, max_steps=max_steps)
    except (*_known_errors(), FileExistsError) as error:
        raise _fail(str(error)) from None
    if as_json:
        _print_json(report)
        return
    from tasks.finetune import REPORTED_METRICS

    names = REPORTED_METRICS
    table = Table(title=f"finetune: {report['steps']} steps on {report['train_rows']} pairs, {report['minutes']:.1f} min")
    table.add_column("model")
    for name in names:
        table.add_column(name, justify="right")
    for label in ("base", "tuned"):
        table.add_row(label, *(f"{report[label][name]:.3f}" for name in names))
    stdout.print(table)
    stdout.print(f"test split: {report['base']['n']} queries. tuned model: {report['model_dir']}\n"
                 f"to use it: set [embedding] model = \"{report['model_dir']}\" in {config}, "
                 f"then `kbflow reindex --config {config}`", highlight=False)


# -- human output -------------------------------------------------------------------------


def _print_ingest(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(report)
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
    if "duration_s" in report:
        stdout.print(f"took {report['duration_s']:.1f} s")


def _print_hits(query: str, hits: list[dict[str, Any]]) -> None:
    table = Table(title=f"search: {query}", show_lines=True)
    for column in ("#", "score", "source / uri", "text"):
        table.add_column(column)
    for rank, hit in enumerate(hits, start=1):
        snippet = " ".join(hit["text"].split())[:300]
        table.add_row(str(rank), f"{hit['score']:.3f}", f"{hit['source']}\n{hit['uri']}", snippet)
    stdout.print(table)


class _progress:
    """A progress bar on stderr fed by kbflow.progress reports (a no-op when disabled)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and stderr.is_terminal

    def __enter__(self) -> None:
        if not self.enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from kbflow import progress

        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=stderr, transient=True,
        )
        self.tasks: dict[str, int] = {}
        self.bar.start()

        def update(stage: str, done: int, total: int) -> None:
            if stage not in self.tasks:
                self.tasks[stage] = self.bar.add_task(stage, total=total)
            self.bar.update(self.tasks[stage], completed=done, total=total)

        progress.listen(update)

    def __exit__(self, *exc_info) -> None:
        if self.enabled:
            from kbflow import progress

            progress.listen(None)
            self.bar.stop()


def main() -> None:
    """Console entry point: quiet library logging unless asked, then run the app."""
    if "--verbose" in sys.argv:
        sys.argv.remove("--verbose")
    else:
        # The CLI reports outcomes itself (a blocked gate is an exit code, not a traceback);
        # Prefect's own log lines stay in the Prefect UI, or on the terminal with --verbose.
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")  # --runner dask: no cluster chatter
    app()


if __name__ == "__main__":
    main()
