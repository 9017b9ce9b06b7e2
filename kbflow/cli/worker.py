"""The warm kbflow worker: a process that holds the heavy stack and runs CLI commands for the CLI.

`kbflow server start` starts it beside the Prefect server. It has imported Prefect, Great
Expectations and sentence-transformers and loaded the configured model, and listens on a
Unix socket of the store (mode 0600). A `kbflow ingest`, vector/hybrid `search`, `evaluate`,
`dataset build` or `reindex` that finds the socket sends its arguments, working folder and
environment there and prints what comes back: the worker runs the same Typer command
in-process (one at a time), with stdout/stderr sent to the client as they are written and
the command's exit code at the end. The model stays loaded across requests (reloaded when
its folder changes).

The client side (`forward`) imports nothing heavy: a command with no worker, a worker of
another Prefect API, or a worker that does not answer runs in its own process as before
(said once on stderr when a worker was there but could not help). `KBFLOW_NO_WORKER=1`
always runs in-process. A client that goes away (Ctrl-C, `kill -9`) makes the worker
interrupt the command as a Ctrl-C would; the store's writes are crash-safe either way.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NO_WORKER = "KBFLOW_NO_WORKER"
WORKER_FILE = "worker.json"
# Commands that pay for Prefect, GX or the model in-process: what the worker is for.
WARM_COMMANDS = {"ingest", "search", "evaluate", "eval", "reindex", "build-dataset", ("dataset", "build")}
SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux
CONNECT_TIMEOUT_S = 2.0


# -- where a store's worker is -------------------------------------------------------------------


def worker_file(config) -> Path:
    from kbflow.prefect_api import prefect_home

    return prefect_home(config) / WORKER_FILE


def socket_path(config) -> Path:
    """`<store>/prefect/worker.sock`, or a short path in the temp folder when that is too long for a socket."""
    from kbflow.prefect_api import prefect_home

    path = prefect_home(config) / "worker.sock"
    if len(str(path)) <= SOCKET_PATH_MAX:
        return path
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"kbflow-worker-{os.getuid()}-{digest}.sock"


def recorded_worker(config) -> dict[str, Any] | None:
    try:
        return json.loads(worker_file(config).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# -- the wire: one JSON object per line ----------------------------------------------------------


def send(conn: socket.socket, message: dict[str, Any]) -> None:
    conn.sendall((json.dumps(message) + "\n").encode("utf-8"))


def ask(config, message: dict[str, Any], timeout: float = CONNECT_TIMEOUT_S) -> dict[str, Any] | None:
    """One request with one answer (e.g. status); None when no worker answers."""
    path = socket_path(config)
    if not path.exists():
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(path))
            send(conn, message)
            line = conn.makefile("rb").readline()
        return json.loads(line) if line else None
    except (OSError, ValueError):
        return None


# -- the client: what the `kbflow` process does first --------------------------------------------


def _command(argv: list[str]) -> str | tuple[str, str] | None:
    words = [a for a in argv if not a.startswith("-")]
    if not words:
        return None
    if words[0] == "dataset" and len(words) > 1:
        return ("dataset", words[1])
    return words[0]


def named_config(argv: list[str]) -> Path:
    """The config a command line names (`--config`, `-c`), else KBFLOW_CONFIG, else kbflow.toml."""
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("--config="):
            return Path(arg.split("=", 1)[1])
    return Path(os.environ.get("KBFLOW_CONFIG") or "kbflow.toml")


def _terminal_size() -> tuple[int, int] | None:
    """The terminal's size as Rich would find it in this process (stdin, stdout, stderr), if any."""
    for fd in (0, 1, 2):
        try:
            size = os.get_terminal_size(fd)
        except OSError:
            continue
        return size.columns, size.lines
    return None


def forward(argv: list[str]) -> int | None:
    """Run the command in the store's warm worker; its exit code, or None to run it in this process."""
    if os.environ.get(NO_WORKER, "") not in ("", "0") or _command(argv) not in WARM_COMMANDS:
        return None
    if any(a in ("--help", "--runner") or a.startswith("--runner=") for a in argv):
        return None  # help is cheap; a Dask/Ray cluster stays bound to the command's own process
    from kbflow.config import load_config

    try:
        config = load_config(named_config(argv))
    except Exception:  # noqa: BLE001 - the in-process run reports a bad config properly
        return None
    path = socket_path(config)
    if not path.exists():
        return None
    request = {
        "op": "run", "argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "store": config.store.uri,
        "tty": {"stdout": sys.stdout.isatty(), "stderr": sys.stderr.isatty()}, "size": _terminal_size(),
    }
    try:
        return _run_remote(path, request)
    except _NotServed as reason:
        print(f"note: the kbflow worker ({path}) {reason}; running in this process", file=sys.stderr, flush=True)
        return None


class _NotServed(Exception):
    """The worker did not run the command (gone, refused, or died before finishing)."""


def _run_remote(path: Path, request: dict[str, Any]) -> int:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            conn.settimeout(CONNECT_TIMEOUT_S)
            conn.connect(str(path))
            send(conn, request)
            conn.settimeout(None)  # a command runs as long as it runs
            reader = conn.makefile("rb")
        except OSError as error:
            raise _NotServed(f"did not answer ({error.strerror or error})") from None
        started = False
        for line in reader:
            message = json.loads(line)
            if "out" in message:
                sys.stdout.write(message["out"])
                sys.stdout.flush()
            elif "err" in message:
                sys.stderr.write(message["err"])
                sys.stderr.flush()
            elif "exit" in message:
                return int(message["exit"])
            elif "refused" in message:
                raise _NotServed(message["refused"])
            elif "started" in message:
                started = True
        raise _NotServed("stopped " + ("in the middle of the command" if started else "before running it"))
    except KeyboardInterrupt:
        # Closing the connection tells the worker to interrupt the command, as Ctrl-C would here.
        sys.stderr.write("Aborted!\n")
        return 1
    finally:
        conn.close()


# -- starting and stopping (kbflow server start | stop | status) ---------------------------------


def start_worker(config, config_path: Path, api_url: str | None, timeout: float = 300.0) -> dict[str, Any] | None:
    """Start the store's worker in the background (its own session) and wait until it answers.

    Returns its status, or None when it did not come up in `timeout` (commands then run in-process;
    its log says why).
    """
    import subprocess

    status = ask(config, {"op": "status"})
    if status is not None:
        return status
    home = worker_file(config).parent
    home.mkdir(parents=True, exist_ok=True)
    log = home / "worker.log"
    env = {**os.environ}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "kbflow.cli.worker", str(config_path.resolve())],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:  # it answers once warm
        status = ask(config, {"op": "status"})
        if status is not None:
            return status
        time.sleep(0.3)
    return None


def stop_worker(config, timeout: float = 10.0) -> int | None:
    """Stop the store's worker (its process group); its pid, or None if none was recorded."""
    from kbflow.prefect_api import process_alive, stop_group

    record = recorded_worker(config)
    if record is None:
        return None
    if process_alive(record["pid"]):
        stop_group(record["pid"], timeout)
    worker_file(config).unlink(missing_ok=True)
    Path(record["socket"]).unlink(missing_ok=True)
    return record["pid"]


def worker_status(config) -> dict[str, Any]:
    """`{"running": bool, ...}`: the worker's own status when it answers."""
    status = ask(config, {"op": "status"})
    return {"running": True, **status} if status is not None else {"running": False}


if __name__ == "__main__":
    from kbflow.cli.worker_process import serve

    serve(Path(sys.argv[1]))
