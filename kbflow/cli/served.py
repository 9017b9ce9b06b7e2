"""Run a command through the store's kbflow service, or in this process when none serves it.

The CLI is a thin client: a served command sends its arguments to the service (kbflow.client),
renders the progress it streams with the same Rich bars, and prints the result as it would have
printed its own. With no service, `KBFLOW_NO_SERVER=1`, `--verbose` (Prefect's log lines on this
terminal) or `--runner dask|ray` (the cluster stays bound to the command), the same operation
(kbflow.service.operations) runs here. A flow command starts a service in the background when none
runs (`[server] autostart`) and says so once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.markup import escape

from kbflow.cli.common import fail, progress_bars, stderr
from kbflow.client import (
    Client, Connected, ServiceLost, ServiceUnavailable, UnsafeService, connect, socket_path,
)
from kbflow.config import KbflowConfig, load_config

in_process_only = False  # set by kbflow.cli.main for --verbose


def _json_values(value: Any) -> Any:
    """The result as JSON gives it (dates as ISO text): the same whether the service or this process ran it."""
    from kbflow.cli.common import _json_default

    return json.loads(json.dumps(value, default=_json_default))


def _service(config_path: Path, loaded: KbflowConfig, autostart: bool) -> Client | None:
    """The service for this command: running, or started now (`autostart`); None: run here."""
    try:
        if not autostart:  # a read: answered by a running service, never worth starting one
            found = connect(config_path, loaded, autostart=False) if socket_path(loaded).exists() else None
        else:
            found = connect(config_path, loaded)
    except UnsafeService as unsafe:
        stderr.print(f"[yellow]warning:[/] {escape(str(unsafe))}; running in this process", highlight=False)
        return None
    except ServiceUnavailable as why:
        stderr.print(f"note: the kbflow service {escape(str(why))}; running in this process", highlight=False)
        return None
    if isinstance(found, Connected) and found.started:
        hello = found.client.hello()
        stderr.print(
            f"started a kbflow service for this store in the background (pid {hello['pid']}): later commands "
            f"skip the start-up; it ends after {loaded.server.idle_timeout_min:g} min idle; stop it with "
            f"`kbflow server stop --config {config_path}` (KBFLOW_NO_SERVER=1 or [server] autostart = false: "
            "never start one)", highlight=False, markup=False, soft_wrap=True)
    return found.client if found is not None else None


def run(command: str, config_path: Path, arguments: dict[str, Any], *, as_json: bool = False,
        flows: bool = False, autostart: bool | None = None, here: bool = False) -> Any:
    """The command's result, from the service or from this process (`here`: always this process).

    `flows`: the command runs flows (a Prefect API, progress bars); `autostart` (default: `flows`): start
    a service when none runs, as a command that loads the model or GX would pay for both otherwise.
    """
    from kbflow.service.operations import OPERATIONS, Context

    loaded = load_config(config_path)
    autostart = flows if autostart is None else autostart
    client = None if here or in_process_only else _service(config_path, loaded, autostart)
    if client is not None:
        try:
            with progress_bars(enabled=flows and not as_json):
                return _json_values(client.call(command, arguments, on_event=_render))
        except ServiceUnavailable as why:
            stderr.print(f"note: the kbflow service {escape(str(why))}; running in this process", highlight=False)
        except ServiceLost as lost:
            raise fail(f"the kbflow service ended during the command ({lost}); a run it was making is recorded "
                       f"as failed or still `running` (`kbflow runs --config {config_path}`); the index is as it "
                       f"was; see {_log(loaded)}") from None
    api = None
    if flows:
        from kbflow.cli.server import flow_api

        api = flow_api(loaded, quiet=as_json)
    context = Context(note=lambda text: stderr.print(text, highlight=False, markup=False),
                      ready=api.ready if api is not None else (lambda: None))
    with progress_bars(enabled=flows and not as_json):
        return _json_values(OPERATIONS[command](str(config_path.resolve()), arguments, context))


def _log(loaded: KbflowConfig) -> str:
    from kbflow.client import service_home

    return str(service_home(loaded) / "service.log")


def _render(event: dict[str, Any]) -> None:
    from kbflow import progress

    if "progress" in event:
        progress.report(*event["progress"])
    elif "note" in event:
        stderr.print(event["note"], highlight=False, markup=False)




def as_path(value: Path | None) -> str | None:
    """A path argument as the service needs it: absolute (the service runs in another folder)."""
    return str(value.expanduser().resolve()) if value is not None else None
