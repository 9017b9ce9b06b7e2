"""Commands that keep kbflow running: serve (deployments, schedules, triggers), deployments (the catalog,
or a prefect.yaml of it) and watch (follow sources)."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from kbflow.cli.common import ConfigOption, JsonOption, app, known_errors, print_json, reports_errors, stderr, stdout
from kbflow.cli.server import flow_api
from kbflow.config import load_config


@app.command()
@reports_errors
def serve(config: ConfigOption = Path("kbflow.toml")) -> None:
    """Run kbflow continuously: scheduled ingests, event-triggered ingests, on-demand reindex."""
    loaded = load_config(config)
    api = flow_api(loaded, quiet=True)
    from kbflow.flows.serve import serve_kbflow

    if api.server is not None:
        stderr.print("note: no PREFECT_API_URL and no `kbflow server`; serving against a temporary local API "
                     "that ends with this process. Event triggers and a UI need a Prefect server: "
                     f"`kbflow server start --config {config}` (or PREFECT_API_URL).")
    api.ready()
    stderr.print(f"serving kbflow deployments for {config} (Ctrl-C to stop)")
    serve_kbflow(str(config.resolve()), loaded)


@app.command()
@reports_errors
def deployments(
    config: ConfigOption = Path("kbflow.toml"),
    as_yaml: Annotated[bool, typer.Option("--yaml", help="print a prefect.yaml for `prefect deploy --all`")] = False,
    as_json: JsonOption = False,
) -> None:
    """The deployments `kbflow serve` runs for this config (or them as a prefect.yaml, for workers)."""
    loaded = load_config(config)
    from kbflow.flows.serve import deployment_catalog, render_prefect_yaml

    if as_yaml:
        sys.stdout.write(render_prefect_yaml(loaded))
        return
    catalog = [
        {"name": d.name, "flow": d.flow.name, "entrypoint": d.entrypoint, "parameters": d.parameters,
         "cron": d.cron or None, "on_change": d.on_change, "description": d.description}
        for d in deployment_catalog(loaded)
    ]
    if as_json:
        print_json(catalog)
        return
    table = Table(title=f"deployments of {config}")
    for column in ("name", "flow", "runs", "parameters"):
        table.add_column(column, overflow="fold")
    for d in catalog:
        runs = d["cron"] or ("on kbflow.source.changed" if d["on_change"] else "on demand")
        table.add_row(d["name"], d["flow"], runs, " ".join(f"{k}={v}" for k, v in d["parameters"].items()))
    stdout.print(table)


@app.command()
@reports_errors
def watch(
    config: ConfigOption = Path("kbflow.toml"),
    source: Annotated[str | None, typer.Option(help="watch only this source")] = None,
    as_json: JsonOption = False,
) -> None:
    """Follow the sources: each change is ingested (or announced to `kbflow serve`) seconds later."""
    loaded = load_config(config)
    loaded.select_sources(source)
    api = flow_api(loaded, quiet=as_json)
    from kbflow.flows.watch import react_to_change, serves_change_trigger, warm_up
    from kbflow.flows.watch import watch as watch_sources

    api.ready()
    announce = serves_change_trigger()
    if not announce:
        warm_up(loaded)
    react = react_to_change(str(config.resolve()), loaded, source, announce=announce)
    stderr.print(f"watching {config} ({'announcing changes to the Prefect API' if announce else 'ingesting here'})")

    def run_source(name: str | None) -> None:
        try:
            report = react(name)
        except known_errors() as error:
            stderr.print(f"[red]ingest of {name or 'all sources'} failed:[/] {escape(str(error))}")
            return
        if "announced" in report:
            for changed in report["announced"]:
                stderr.print(f"announced kbflow.source.changed for {changed}")
        elif as_json:
            print_json({"source": name, **report})
        else:
            d, c = report.get("documents", {}), report.get("chunks", {})
            stdout.print(f"{report.get('run_id')} {name or 'all'}: {report['status']}, documents "
                         f"+{d.get('new', 0)} ~{d.get('changed', 0)} -{d.get('deleted', 0)}, "
                         f"chunks embedded {c.get('embedded', 0)}, total {c.get('total', 0)}")
        sys.stdout.flush()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # a service manager's stop: finish the tick, exit
    try:
        watch_sources(loaded, run_source, source, stop=stop)
    except KeyboardInterrupt:
        pass
    stderr.print("stopped watching")
