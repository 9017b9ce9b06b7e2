"""The service's HTTP API: a handshake, and one streaming endpoint per served command.

    GET  /v1/hello           version, code hash, pid, store, counters
    POST /v1/{command}       {"config", "environ", "environment_digest", "arguments"} -> NDJSON events:
                             {"progress": [stage, done, total]}, {"note": text}, then {"result": ...}
                             or {"error": {"kind": refused|blocked|failed|cancelled|internal, "message", ...}}

Each command runs in its own thread with its config read against the client's `KBFLOW_*` overrides
(a context variable: kbflow.config.request_environment) and its progress and cancel token scoped to it
(kbflow.progress.scoped): nothing process-wide changes per request, so a search is answered while an
ingest runs. A client that goes away (Ctrl-C, killed) or a service that is stopping cancels the run
at its next batch boundary; the run is recorded as failed and the index is left as it was.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from kbflow import __version__, progress
from kbflow.client import code_hash, socket_path
from kbflow.config import KbflowConfig, load_config, request_environment
from kbflow.service.operations import FLOW_OPERATIONS, OPERATIONS, Context, user_message

log = logging.getLogger("kbflow.service")
KEEPALIVE_S = 1.0  # a blank line this often: a client that went away is noticed within about a second
_DONE = object()


class CommandRequest(BaseModel):
    config: str
    environ: dict[str, str] = Field(default_factory=dict)
    environment_digest: str = ""
    arguments: dict[str, Any] = Field(default_factory=dict)


class Service:
    """The warm process's state: what it serves, what runs, when it was last used."""

    def __init__(self, config: KbflowConfig, environment_digest: str, log_path: Path) -> None:
        self.config, self.environment_digest, self.log_path = config, environment_digest, log_path
        self.code_hash = code_hash()
        self.started_at = time.time()
        self.requests, self.last_active = 0, time.monotonic()
        self.running: dict[int, progress.CancelToken] = {}
        self.lock = threading.Lock()
        self.api_ready = threading.Event()
        self.api_error: BaseException | None = None
        self.warm_s: float | None = None

    # -- warm-up: the Prefect API, the imports, the model ------------------------------------------

    def warm(self, api) -> None:
        """Import the flows and GX, load the model, wait for the Prefect API `api` (in a thread)."""
        started = time.perf_counter()
        try:
            self._import_and_load()
            api.ready()
        except BaseException as error:  # noqa: BLE001 - reported to each flow command that waits for it
            self.api_error = error
            log.exception("warm-up failed")
        finally:
            self.api_ready.set()
            self.warm_s = round(time.perf_counter() - started, 1)
            log.warning("warm in %.1f s", self.warm_s)

    def _import_and_load(self) -> None:
        import kbflow.flows.build_dataset  # noqa: F401
        import kbflow.flows.evaluate  # noqa: F401
        import kbflow.flows.ingest  # noqa: F401
        import kbflow.flows.reindex  # noqa: F401
        import kbflow.search  # noqa: F401
        from kbflow.models import load_embedder
        from kbflow.tasks.quality.suites import open_context

        open_context(None)  # GX's first context builds its registries; later ones are cheap
        load_embedder(self.config.embedding).encode(["warm up"])

    def wait_for_api(self) -> None:
        self.api_ready.wait()
        if self.api_error is not None:
            raise RuntimeError(f"the service's Prefect API did not start: {self.api_error}")

    # -- bookkeeping ---------------------------------------------------------------------------------

    def hello(self) -> dict[str, Any]:
        from kbflow.models import _load

        return {"version": __version__, "code_hash": self.code_hash, "pid": os.getpid(),
                "socket": str(socket_path(self.config)), "api_url": os.environ.get("PREFECT_API_URL"),
                "store": self.config.store.uri, "requests": self.requests, "running": len(self.running),
                "busy": bool(self.running), "model_loads": _load.cache_info().misses, "warm_s": self.warm_s,
                "started_at": self.started_at, "log": str(self.log_path)}

    def cancel_all(self, reason: str) -> None:
        with self.lock:
            tokens = list(self.running.values())
        for token in tokens:
            token.cancel(reason)

    def idle_for(self) -> float:
        with self.lock:
            return 0.0 if self.running else time.monotonic() - self.last_active

    # -- one command ---------------------------------------------------------------------------------

    def refusal(self, command: str, request: CommandRequest, config: KbflowConfig) -> str | None:
        if command not in OPERATIONS:
            return f"serves no command {command!r}"
        if config.store.uri != self.config.store.uri:
            return f"serves the store {self.config.store.uri}, not {config.store.uri}"
        if request.environment_digest != self.environment_digest:
            return ("was started with other Prefect, credential or model settings in its environment than "
                    "this command's")
        return None

    def run(self, command: str, request: CommandRequest, emit) -> None:
        """Run `command` in this thread, emitting its events; the last one is its result or its error."""
        token = progress.CancelToken()
        with self.lock:
            self.requests += 1
            self.running[threading.get_ident()] = token
        scope = request_environment.set(dict(request.environ))
        try:
            try:
                config = load_config(request.config)
            except Exception as error:  # noqa: BLE001 - a bad config is the user's: the message
                emit({"error": {"kind": "failed", "message": user_message(error) or str(error)}})
                return
            refusal = self.refusal(command, request, config)
            if refusal:
                emit({"error": {"kind": "refused", "message": refusal}})
                return
            context = Context(note=lambda text: emit({"note": text}), ready=self.wait_for_api,
                              environ=dict(request.environ))
            with progress.scoped(lambda stage, done, total: emit({"progress": [stage, done, total]}), token):
                emit({"result": self._operation(command, request, context)})
        except BaseException as error:  # noqa: BLE001 - every outcome goes back to the client
            emit({"error": self._error(error, token)})
        finally:
            request_environment.reset(scope)
            with self.lock:
                self.running.pop(threading.get_ident(), None)
                self.last_active = time.monotonic()

    def _operation(self, command: str, request: CommandRequest, context: Context) -> Any:
        if command in FLOW_OPERATIONS:
            from kbflow.prefect_api import flow_heartbeats_off

            # A Prefect settings context belongs to a thread: this one's flows run without heartbeats.
            with flow_heartbeats_off():
                return OPERATIONS[command](request.config, request.arguments, context)
        return OPERATIONS[command](request.config, request.arguments, context)

    def _error(self, error: BaseException, token: progress.CancelToken) -> dict[str, Any]:
        from kbflow.client import CommandBlocked, CommandFailed

        if isinstance(error, CommandBlocked):
            return {"kind": "blocked", "message": str(error), "report": error.report, "failures": error.failures}
        if isinstance(error, progress.Cancelled) or token.cancelled:
            return {"kind": "cancelled", "message": f"{token.reason or error}; the run was recorded as failed "
                    "and the index left as it was (`kbflow runs`)"}
        if isinstance(error, CommandFailed):
            return {"kind": "failed", "message": str(error), "exit": error.exit_code}
        message = user_message(error)
        if message is not None:
            return {"kind": "failed", "message": message}
        log.error("internal error:\n%s", "".join(traceback.format_exception(error)))
        return {"kind": "internal", "message": f"internal error in the kbflow service: {type(error).__name__}: "
                f"{error}; its traceback is in {self.log_path}"}


def _json_default(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def create_app(service: Service) -> FastAPI:
    """The FastAPI app of `service`."""
    app = FastAPI(title="kbflow service", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/v1/hello")
    def hello() -> dict[str, Any]:
        return service.hello()

    @app.post("/v1/{command}")
    async def command(command: str, request: CommandRequest) -> StreamingResponse:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def emit(event: Any) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        def work() -> None:
            try:
                service.run(command, request, emit)
            finally:
                emit(_DONE)

        worker = threading.Thread(target=work, name=f"kbflow {command}", daemon=True)

        async def stream():
            finished = False
            try:
                while True:
                    try:
                        event = await asyncio.wait_for(events.get(), KEEPALIVE_S)
                    except TimeoutError:
                        yield "\n"
                        continue
                    if event is _DONE:
                        finished = True
                        return
                    yield json.dumps(event, default=_json_default) + "\n"
            finally:
                if not finished:  # the client went away: stop the run at its next batch boundary
                    token = service.running.get(worker.ident or -1)
                    if token is not None:
                        token.cancel("the client went away")

        worker.start()
        return StreamingResponse(stream(), media_type="application/x-ndjson")

    return app
