"""`kbflow server start | stop | status`: a persistent local Prefect server for a store, and its warm worker.

Every command that runs flows finds the server (see kbflow.prefect_api): with it running, a
command pays no Prefect server start-up, and every flow run, task run and artifact
is in its UI. Without it (and without PREFECT_API_URL), a command starts a temporary
server bound to its own process. Beside it runs the warm worker (kbflow.cli.worker):
commands that need Great Expectations or the model run there, where both are loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kbflow.cli.common import ConfigOption, JsonOption, app, print_json, reports_errors, stderr, stdout
from kbflow.config import KbflowConfig, load_config

server_app = typer.Typer(help="A local Prefect server for this store (UI, run history), kept running.",
                         no_args_is_help=True)
app.add_typer(server_app, name="server")


def flow_api(config: KbflowConfig, quiet: bool = False):
    """The Prefect API for a command about to run flows; call `.ready()` just before the first flow.

    Called before the flows are imported, so a temporary server starts alongside those imports.
    """
    from kbflow.prefect_api import connect

    api = connect(config)
    if api.server is not None and not quiet:
        stderr.print("starting a temporary Prefect server for this command; `kbflow server start` keeps one "
                     "running", highlight=False)
    return api


@server_app.command("start")
@reports_errors
def start(
    config: ConfigOption = Path("kbflow.toml"),
    port: Annotated[int | None, typer.Option(help="port of the API and UI (default 4200, else a free one)")] = None,
    worker: Annotated[bool, typer.Option("--worker/--no-worker",
                                         help="also start the warm worker (model and GX loaded)")] = True,
    as_json: JsonOption = False,
) -> None:
    """Start `prefect server start` in the background, its database under the store; print the UI address.

    With it, the warm worker: a process that holds Great Expectations and the model, where `ingest`,
    `search`, `evaluate`, `dataset build` and `reindex` run without loading them.
    """
    from kbflow.cli.worker import start_worker
    from kbflow.prefect_api import explicit_api_url, recorded_server, start_server

    loaded = load_config(config)
    before = recorded_server(loaded)
    if not as_json:
        stderr.print("starting a Prefect server (a fresh database takes a minute to set up) …")
    info = start_server(loaded, port=port)
    warm = None
    if worker:
        if not as_json:
            stderr.print("starting the warm worker (imports, model load) …")
        warm = start_worker(loaded, config, explicit_api_url() or info.url)
        if warm is None:
            stderr.print(f"warning: the warm worker did not start; commands run in their own process "
                         f"(see {Path(info.home) / 'worker.log'})", highlight=False)
    if as_json:
        print_json({"running": True, **vars(info), "worker": {"running": warm is not None, **(warm or {})}})
        return
    already = before is not None and before.pid == info.pid
    stdout.print(f"{'already running' if already else 'started'}: Prefect UI {info.ui} (pid {info.pid})")
    if warm is not None:
        stdout.print(f"warm worker: pid {warm['pid']}, socket {warm['socket']}")
    stdout.print(f"kbflow commands with --config {config} use it; logs in {info.log}; "
                 f"stop it with `kbflow server stop --config {config}`")
    if explicit_api_url():
        stderr.print(f"note: PREFECT_API_URL is set ({explicit_api_url()}); commands report there, not to this server")


@server_app.command("stop")
@reports_errors
def stop(config: ConfigOption = Path("kbflow.toml"), as_json: JsonOption = False) -> None:
    """Stop the store's Prefect server and its warm worker (and everything they started)."""
    from kbflow.cli.worker import stop_worker
    from kbflow.prefect_api import stop_server

    loaded = load_config(config)
    worker_pid = stop_worker(loaded)
    info = stop_server(loaded)
    if as_json:
        print_json({"stopped": info is not None, "pid": info.pid if info else None, "worker_pid": worker_pid})
        return
    if worker_pid is not None:
        stdout.print(f"stopped the warm worker (pid {worker_pid})")
    if info is None:
        stdout.print("no kbflow server recorded for this store")
    else:
        stdout.print(f"stopped the Prefect server {info.ui} (pid {info.pid})")


@server_app.command("status")
@reports_errors
def status(config: ConfigOption = Path("kbflow.toml"), as_json: JsonOption = False) -> None:
    """Whether the store's Prefect server and warm worker run, where the UI is, what the worker did."""
    from kbflow.cli.worker import worker_status
    from kbflow.prefect_api import recorded_server

    loaded = load_config(config)
    info = recorded_server(loaded)
    running = info is not None and info.alive
    warm = worker_status(loaded)
    if as_json:
        print_json({"running": running, **(vars(info) if info else {}), "worker": warm})
        return
    if info is None:
        stdout.print("not running; `kbflow server start` starts one")
    elif running:
        stdout.print(f"running: Prefect UI {info.ui}, API {info.url} (pid {info.pid})")
    else:
        stdout.print(f"not running (pid {info.pid} recorded at {info.ui} is gone); `kbflow server start` restarts it")
    if warm["running"]:
        stdout.print(f"warm worker: pid {warm['pid']}, {warm['requests']} commands run, "
                     f"model loaded {warm['model_loads']} time(s){', busy' if warm['busy'] else ''}")
    if not running:
        raise typer.Exit(1)
