"""`kbflow server start | stop | status`: a persistent local Prefect server for a store, and its kbflow service.

Every command that runs flows finds the server (see kbflow.prefect_api): with it running, a
command pays no Prefect server start-up, and every flow run, task run and artifact
is in its UI. Without it (and without PREFECT_API_URL), a command starts a temporary
server bound to its own process. Beside it runs the kbflow service (kbflow.service):
the commands that need Great Expectations or the model run there, where both are loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kbflow.cli.common import ConfigOption, JsonOption, app, print_json, reports_errors, stderr, stdout
from kbflow.config import KbflowConfig, load_config
from kbflow.prefect_api import explicit_api_url

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
    worker: Annotated[bool, typer.Option("--worker/--no-worker", "--service/--no-service",
                                         help="also start the kbflow service (model and GX loaded)")] = True,
    as_json: JsonOption = False,
) -> None:
    """Start `prefect server start` in the background, its database under the store; print the UI address.

    With it, the kbflow service: a process that holds Great Expectations and the model, where `ingest`,
    `search`, `evaluate`, `dataset build` and `reindex` run without loading them.
    """
    from kbflow.client import ServiceUnavailable, UnsafeService, connect, start_service
    from kbflow.prefect_api import recorded_server, start_server

    loaded = load_config(config)
    before = recorded_server(loaded)
    already = before is not None and before.alive
    if not as_json and not already:
        stderr.print("starting a Prefect server (a fresh database takes a minute to set up) …")
    info = start_server(loaded, port=port)
    hello = None
    if worker:
        try:
            found = connect(config, loaded, autostart=False)
        except (ServiceUnavailable, UnsafeService):
            found = None
        if found is None:
            if not as_json:
                stderr.print("starting the kbflow service (imports and model load continue in the background) …")
            client = start_service(config, loaded)
        else:
            client = found.client
        hello = client.hello() if client is not None else None
        if hello is None:
            stderr.print(f"warning: the kbflow service did not start; commands run in their own process "
                         f"(see {service_log(loaded)})", highlight=False)
    if as_json:
        print_json({"running": True, **public(info), "worker": {"running": hello is not None, **(hello or {})}})
        return
    stdout.print(f"{'already running' if already else 'started'}: Prefect UI {info.ui} (pid {info.pid})")
    if hello is not None:
        stdout.print(f"kbflow service: pid {hello['pid']}, log {hello['log']}")
    stdout.print(f"kbflow commands with --config {config} use it; logs in {info.log}; "
                 f"stop it with `kbflow server stop --config {config}`")
    if info.auth:
        stdout.print(f"the API and UI ask for a login: user and password are the \"auth\" of "
                     f"{Path(info.home) / 'server.json'}", highlight=False)
    if explicit_api_url():
        stderr.print(f"note: PREFECT_API_URL is set ({explicit_api_url()}); commands report there, not to this server")


def public(info) -> dict:
    """The server's record without its password."""
    return {k: v for k, v in vars(info).items() if k != "auth"}


def service_log(loaded: KbflowConfig) -> Path:
    from kbflow.client import service_home

    return service_home(loaded) / "service.log"


@server_app.command("stop")
@reports_errors
def stop(config: ConfigOption = Path("kbflow.toml"), as_json: JsonOption = False) -> None:
    """Stop the store's kbflow service (its running commands are cancelled and recorded as failed), then
    its Prefect server (and everything they started)."""
    from kbflow.client import stop_service
    from kbflow.prefect_api import stop_server

    loaded = load_config(config)
    service = stop_service(loaded)
    info = stop_server(loaded)
    service_pid = service["pid"] if service and service["stopped"] else None
    if as_json:
        print_json({"stopped": info is not None, "pid": info.pid if info else None, "worker_pid": service_pid})
        return
    if service_pid is not None:
        stdout.print(f"stopped the kbflow service (pid {service_pid})")
    elif service is not None:
        stdout.print(f"the kbflow service recorded (pid {service['pid']}) was gone; its record is removed")
    if info is None:
        stdout.print("no kbflow server recorded for this store")
    else:
        stdout.print(f"stopped the Prefect server {info.ui} (pid {info.pid})")


@server_app.command("status")
@reports_errors
def status(config: ConfigOption = Path("kbflow.toml"), as_json: JsonOption = False) -> None:
    """Whether the store's Prefect server and kbflow service run, where the UI is, what the service did."""
    from kbflow.client import Client, ServiceUnavailable
    from kbflow.prefect_api import recorded_server

    loaded = load_config(config)
    info = recorded_server(loaded)
    running = info is not None and info.alive
    try:
        warm = {"running": True, **Client(config, config=loaded).hello()}
    except ServiceUnavailable:
        warm = {"running": False}
    if as_json:
        print_json({"running": running, **(public(info) if info else {}), "worker": warm})
        return
    if info is None:
        stdout.print("not running; `kbflow server start` starts one")
    elif running:
        stdout.print(f"running: Prefect UI {info.ui}, API {info.url} (pid {info.pid})")
    else:
        stdout.print(f"not running (pid {info.pid} recorded at {info.ui} is gone); `kbflow server start` restarts it")
    if warm["running"]:
        stdout.print(f"kbflow service: pid {warm['pid']}, {warm['requests']} commands run, "
                     f"model loaded {warm['model_loads']} time(s){', busy' if warm['busy'] else ''}")
    if not running:
        raise typer.Exit(1)
