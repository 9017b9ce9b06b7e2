"""The warm worker's own process: warm up once, then run CLI commands sent over its socket.

Started by `kbflow server start` (`python -m kbflow.cli.worker CONFIG`); see kbflow.cli.worker
for what it is for and what the client sends. One command runs at a time (a lock); while it
runs, os.environ (swapped without a gap: see `become`), the working folder, sys.argv,
sys.stdout/stderr and the CLI's Rich consoles are the client's, and are put back afterwards.
Status requests are answered meanwhile.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import select
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

from kbflow.cli.worker import named_config, send, socket_path, worker_file
from kbflow.config import load_config


class Channel:
    """The client connection, shared by the command's two output streams (and Rich's refresh thread)."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn, self.lock, self.gone = conn, threading.Lock(), False

    def send(self, message: dict[str, Any]) -> None:
        with self.lock:
            if self.gone:
                return  # the client went away: the watcher interrupts the command; drop its output
            try:
                send(self.conn, message)
            except OSError:
                self.gone = True


class Stream(io.TextIOBase):
    """sys.stdout or sys.stderr of a command run for a client: text goes to the client as written."""

    def __init__(self, channel: Channel, name: str, tty: bool) -> None:
        self.channel, self.name, self.tty = channel, name, tty

    def write(self, text: str) -> int:
        if text:
            self.channel.send({self.name: text})
        return len(text)

    def isatty(self) -> bool:
        return self.tty

    @property
    def encoding(self) -> str:
        return "utf-8"


class HangUpWatcher:
    """Interrupts the command (KeyboardInterrupt in its thread, as Ctrl-C would) when the client hangs up."""

    def __init__(self, conn: socket.socket, thread_id: int) -> None:
        self.conn, self.thread_id = conn, thread_id
        self.done, self.lock = False, threading.Lock()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> HangUpWatcher:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        with self.lock:
            self.done = True

    def _watch(self) -> None:
        while True:
            readable, _, _ = select.select([self.conn], [], [], 0.5)
            with self.lock:
                if self.done:
                    return
                # The client sends nothing after its request: readable means it closed the connection.
                if readable and not self.conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread_id),
                                                               ctypes.py_object(KeyboardInterrupt))
                    self.done = True
                    return


def model_signature(config) -> tuple[str, tuple] | None:
    """The configured model folder and its files' sizes and times: a change means reload it."""
    from kbflow.models import resolve_model_path

    try:
        folder = Path(resolve_model_path(config.embedding.model, config.embedding.allow_download))
    except Exception:  # noqa: BLE001 - the command itself reports a model it cannot load
        return None
    if not folder.is_dir():
        return None
    files = sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file())
    return str(folder), tuple(files)


class Worker:
    """Holds the warm stack and runs one command at a time."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.config = load_config(config_path)
        self.api_url = os.environ.get("PREFECT_API_URL")
        self.lock = threading.Lock()
        self.requests, self.busy, self.warm_s = 0, False, 0.0
        self.models: dict[str, tuple] = {}  # model folder -> signature when loaded
        self.started_at = time.time()

    def warm(self) -> None:
        """Import what the heavy commands import, and load the configured model."""
        started = time.perf_counter()
        import great_expectations  # noqa: F401

        import kbflow.cli  # noqa: F401  - every command module
        import kbflow.flows.build_dataset  # noqa: F401
        import kbflow.flows.evaluate  # noqa: F401
        import kbflow.flows.ingest  # noqa: F401
        import kbflow.flows.reindex  # noqa: F401
        import kbflow.search  # noqa: F401
        from kbflow.models import load_embedder
        from kbflow.tasks.quality.suites import open_context

        open_context(None)  # GX's first context builds its registries; later ones are cheap
        self.refresh_model(self.config)
        load_embedder(self.config.embedding).encode(["warm up"])
        self.warm_s = time.perf_counter() - started

    def refresh_model(self, config) -> None:
        """Forget loaded models when the configured model's folder changed since it was loaded."""
        from kbflow.models import _load

        signature = model_signature(config)
        if signature is None:
            return
        folder, files = signature
        if folder in self.models and self.models[folder] != files:
            _load.cache_clear()
        self.models[folder] = files

    def status(self) -> dict[str, Any]:
        from kbflow.models import _load

        return {"pid": os.getpid(), "socket": str(socket_path(self.config)), "store": self.config.store.uri,
                "api_url": self.api_url, "requests": self.requests, "busy": self.busy,
                "model_loads": _load.cache_info().misses, "warm_s": round(self.warm_s, 1),
                "started_at": self.started_at}

    def refusal(self, request: dict[str, Any]) -> str | None:
        if request.get("store") != self.config.store.uri:
            return f"serves the store {self.config.store.uri}, not {request.get('store')}"
        theirs = request["env"].get("PREFECT_API_URL")
        if theirs and theirs != self.api_url:
            return f"reports to the Prefect API {self.api_url}, this command to {theirs}"
        return None

    def run(self, conn: socket.socket, request: dict[str, Any]) -> None:
        refusal = self.refusal(request)
        if refusal:
            send(conn, {"refused": refusal})
            return
        with self.lock:
            self.busy, self.requests = True, self.requests + 1
            try:
                send(conn, {"started": True})
                channel = Channel(conn)
                code = self.execute(channel, request)
                channel.send({"exit": code})
            finally:
                self.busy = False

    def execute(self, channel: Channel, request: dict[str, Any]) -> int:
        """Run the command as `kbflow ARGV` would in the client's process; its exit code."""
        out = Stream(channel, "out", request["tty"]["stdout"])
        err = Stream(channel, "err", request["tty"]["stderr"])
        env = dict(request["env"])
        if request.get("size") and "COLUMNS" not in env:  # Rich's width in the client: its terminal's
            env["COLUMNS"], env["LINES"] = map(str, request["size"])
        saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv
        try:
            become(os.environ, env)
            os.chdir(request["cwd"])
            sys.argv = ["kbflow", *request["argv"]]
            with client_consoles(out, err), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                with HangUpWatcher(channel.conn, threading.get_ident()):
                    return run_app(request["argv"], self)
        except BaseException:  # noqa: BLE001 - an interrupt that landed outside the command: it ended
            return 1
        finally:
            become(os.environ, saved_env)
            os.chdir(saved_cwd)
            sys.argv = saved_argv


def become(environ: MutableMapping[str, str], wanted: dict[str, str]) -> None:
    """Make `environ` equal `wanted`, never passing through a state without a variable both have.

    Prefect's background threads (events, API logs) read settings such as PREFECT_API_URL from
    the environment at any moment; clearing it first would let them see no API URL at all.
    """
    for name in [name for name in environ if name not in wanted]:
        del environ[name]
    for name, value in wanted.items():
        if environ.get(name) != value:
            environ[name] = value


def run_app(argv: list[str], worker: Worker) -> int:
    """The Typer app on `argv`; the exit code a `kbflow` process would end with (traceback on stderr)."""
    from kbflow.cli import app
    from kbflow.prefect_api import flow_heartbeats_off

    with contextlib.suppress(Exception):  # a config the command itself will report
        worker.refresh_model(load_config(named_config(argv)))
    try:
        with flow_heartbeats_off():  # the process's own setting holds in its main thread only
            app(args=argv, prog_name="kbflow")
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)
        return 1
    except Exception:  # noqa: BLE001 - as Python would at the top of a process: traceback, exit 1
        traceback.print_exc()
        return 1
    return 0


@contextlib.contextmanager
def client_consoles(out: Stream, err: Stream) -> Iterator[None]:
    """The CLI's two Rich consoles write to the client, sized and coloured for its terminal.

    Other modules hold these Console objects by name, so they are re-initialised in place
    (from the client's environment, already in os.environ) and put back afterwards.
    """
    from rich.console import Console

    from kbflow.cli import common

    saved = [(console, dict(console.__dict__)) for console in (common.stdout, common.stderr)]
    common.stdout.__dict__.update(Console(file=out).__dict__)
    common.stderr.__dict__.update(Console(file=err, stderr=True).__dict__)
    try:
        yield
    finally:
        for console, state in saved:
            console.__dict__.clear()
            console.__dict__.update(state)


class Handler(socketserver.StreamRequestHandler):
    worker: Worker

    def handle(self) -> None:
        line = self.rfile.readline()
        if not line:
            return
        request = json.loads(line)
        if request.get("op") == "status":
            send(self.connection, self.worker.status())
        elif request.get("op") == "run":
            self.worker.run(self.connection, request)


def serve(config_path: Path) -> None:
    """Warm up, then answer on the store's socket (mode 0600) until stopped."""
    worker = Worker(config_path)
    worker.warm()
    print(f"warm in {worker.warm_s:.1f} s", flush=True)
    path = socket_path(worker.config)
    path.unlink(missing_ok=True)
    Handler.worker = worker
    previous = os.umask(0o177)  # the socket is created 0600: only its owner can send commands
    try:
        server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
    finally:
        os.umask(previous)
    server.daemon_threads = True
    worker_file(worker.config).write_text(
        json.dumps({"pid": os.getpid(), "socket": str(path), "started_at": worker.started_at}), encoding="utf-8")
    server.serve_forever()
