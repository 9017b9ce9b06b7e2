"""`kbflow server start | stop | status`: a persistent local Prefect server for a store.

Every command that runs flows finds it (see kbflow.prefect_api): with it running, a
command pays no Prefect server start-up, and every flow run, task run and artifact
is in its UI. Without it (and without PREFECT_API_URL), a command starts a temporary
server bound to its own process.
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
    as_json: JsonOption = False,
) -> None:
    """Start `prefect server start` in the background, its database under the store; print the UI address."""
    from kbflow.prefect_api import explicit_api_url, recorded_server, start_server

    loaded = load_config(config)
    before = recorded_server(loaded)
    if not as_json:
        stderr.print("starting a Prefect server (a fresh database takes a minute to set up) …")
    info = start_server(loaded, port=port)
    if as_json:
        print_json({"running": True, **vars(info)})
        return
    already = before is not None and before.pid == info.pid
    stdout.print(f"{'already running' if already else 'started'}: Prefect UI {info.ui} (pid {info.pid})")
    stdout.print(f"kbflow commands with --config {config} use it; logs in {info.log}; "
                 f"stop it with `kbflow server stop --config {config}`")
    if explicit_api_url():
        stderr.print(f"note: PREFECT_API_URL is set ({explicit_api_url()}); commands report there, not to this server")


@server_app.command("stop")
@reports_errors
def stop(config: ConfigOption = Path("kbflow.toml"), as_json: JsonOption = False) -> None:
    """Stop the store's Prefect server (and everything it started)."""
    from kbflow.prefect_api import stop_server

    info = stop_server(load_config(config))
    if as_json:
        print_json({"stopped": info is not None, "pid": info.pid if info else None})
    elif info is None:
        stdout.print("no kbflow server recorded for this store")
    else:
        stdout.print(f"stopped the Prefect server {info.ui} (pid {info.pid})")


@server_app.command("status")
@reports_errors
def status(config: ConfigOption = Path("kbflow.toml"), as_json: JsonOption = False) -> None:
    """Whether the store's Prefect server runs, and where its UI is."""
    from kbflow.prefect_api import recorded_server

    info = recorded_server(load_config(config))
    running = info is not None and info.alive
    if as_json:
        print_json({"running": running, **(vars(info) if info else {})})
        return
    if info is None:
        stdout.print("not running; `kbflow server start` starts one")
    elif running:
        stdout.print(f"running: Prefect UI {info.ui}, API {info.url} (pid {info.pid})")
    else:
        stdout.print(f"not running (pid {info.pid} recorded at {info.ui} is gone); `kbflow server start` restarts it")
    if not running:
        raise typer.Exit(1)
