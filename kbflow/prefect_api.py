"""Which Prefect API a kbflow process talks to, and the Prefect servers kbflow starts.

Order of choice for a command that runs flows:
1. an explicit `PREFECT_API_URL` (environment or Prefect profile) always wins;
2. else a live server started by `kbflow server start` for this store (its pid
   and address are recorded in `<store>/prefect/server.json`);
3. else a temporary server that lives exactly as long as the CLI process: it is
   started in its own process group with a parent-death signal (Linux), so even
   a `kill -9` of the CLI takes it down, and it is stopped at exit otherwise.
   Prefect's own temporary server (what a bare flow call starts) would be left
   running, re-parented to PID 1, by a `kill -9`.

Both servers kbflow starts keep Prefect's database under the store
(`<store>/prefect/prefect.db`, PREFECT_HOME), so a run made with the temporary
server is in the history the persistent server's UI shows. Prefect is imported
lazily here: nothing in this module costs more than a few system calls until a
server has to start.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from kbflow.config import KbflowConfig
from kbflow.errors import KbflowError

SERVER_FILE = "server.json"
DEFAULT_PORT = 4200
START_TIMEOUT_S = 180.0  # a fresh database migrates first; a busy 2-core machine needs a minute or more
PR_SET_PDEATHSIG = 1


class ServerError(KbflowError, RuntimeError):
    """A Prefect server kbflow manages did not start, or is not there."""


@dataclass
class ServerInfo:
    """What `kbflow server start` records: enough to find, check and stop the server."""

    pid: int
    url: str  # the API, e.g. http://127.0.0.1:4200/api
    ui: str
    home: str  # PREFECT_HOME of the server: its database and logs
    log: str
    started_at: float

    @property
    def alive(self) -> bool:
        return process_alive(self.pid) and healthy(self.url)


def prefect_home(config: KbflowConfig) -> Path:
    """Prefect's home for this store: `<store>/prefect`, or beside the config for a remote store."""
    if config.store.is_local:
        return Path(config.store.uri) / "prefect"
    return config.root / ".kbflow-prefect"


def server_file(config: KbflowConfig) -> Path:
    return prefect_home(config) / SERVER_FILE


def recorded_server(config: KbflowConfig) -> ServerInfo | None:
    """The server `kbflow server start` recorded for this store, alive or not; None if none was."""
    path = server_file(config)
    try:
        return ServerInfo(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    """True when the Prefect API answers its health check."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def free_port(preferred: int | None = None) -> int:
    """`preferred` if nothing listens there, else a port the system picks."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise ServerError("no free local port for a Prefect server")


def _server_environment(home: Path) -> dict[str, str]:
    env = {**os.environ, "PREFECT_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)  # the server itself is the API; it must not look for another
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    return env


def _wait_healthy(api_url: str, process: subprocess.Popen, timeout: float, log: Path | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(encoding="utf-8", errors="replace")[-2000:] if log and log.is_file() else ""
            raise ServerError(f"the Prefect server exited with code {process.returncode}\n{tail}".rstrip())
        if healthy(api_url, timeout=1.0):
            return
        time.sleep(0.2)
    raise ServerError(f"the Prefect server at {api_url} did not answer within {timeout:.0f} s"
                      + (f"; see {log}" if log else ""))


# -- the persistent server: kbflow server start | stop | status -------------------------------------


def start_server(config: KbflowConfig, port: int | None = None, timeout: float = START_TIMEOUT_S) -> ServerInfo:
    """`prefect server start` in the background for this store; returns the running server.

    The server runs in a session of its own (it outlives this process, on purpose) and
    is stopped with `stop_server`. A live recorded server is returned as it is.
    """
    running = recorded_server(config)
    if running is not None and running.alive:
        return running
    home = prefect_home(config)
    home.mkdir(parents=True, exist_ok=True)
    port = free_port(port or DEFAULT_PORT)
    log = home / "server.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=_server_environment(home), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: `stop` ends the server and anything it started
        )
    base = f"http://127.0.0.1:{port}"
    info = ServerInfo(pid=process.pid, url=f"{base}/api", ui=base, home=str(home), log=str(log),
                      started_at=time.time())
    try:
        _wait_healthy(info.url, process, timeout, log)
    except ServerError:
        stop_group(process.pid)
        raise
    server_file(config).write_text(json.dumps(asdict(info)), encoding="utf-8")
    return info


def stop_server(config: KbflowConfig, timeout: float = 10.0) -> ServerInfo | None:
    """Stop the recorded server (its whole process group); None if none was recorded."""
    info = recorded_server(config)
    if info is None:
        return None
    if process_alive(info.pid):
        stop_group(info.pid, timeout)
    server_file(config).unlink(missing_ok=True)
    return info


def stop_group(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM to the process group led by `pid`, SIGKILL after `timeout`."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        _reap(pid)
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


# -- what a flow-running command uses --------------------------------------------------------------


def explicit_api_url() -> str | None:
    """PREFECT_API_URL as Prefect would find it: environment, active profile, or settings files.

    Importing Prefect to ask costs seconds, so the usual places are read directly; Prefect's
    own settings are asked only when it is imported already, or a `prefect.toml` / `.env` in
    the working folder could set the URL.
    """
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    if "prefect.context" in sys.modules or any(Path(name).is_file() for name in ("prefect.toml", ".env")):
        from prefect.settings import get_current_settings

        return get_current_settings().api.url
    return _profile_api_url()


def _profile_api_url() -> str | None:
    import tomllib

    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    path = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        profiles = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active", "ephemeral")
    url = profiles.get("profiles", {}).get(active, {}).get("PREFECT_API_URL")
    return str(url) if url else None


def use_api(url: str) -> None:
    """Point this process (and what it starts) at `url`, whether or not Prefect is imported yet."""
    os.environ["PREFECT_API_URL"] = url
    if "prefect.context" in sys.modules:
        from prefect.settings import get_current_settings

        if get_current_settings().api.url == url:
            return  # already there (a warm worker asks before every command): no context to stack
        # Prefect read its settings at import; a settings context for the rest of the process.
        from prefect.settings import PREFECT_API_URL, temporary_settings

        settings = temporary_settings(updates={PREFECT_API_URL: url})
        settings.__enter__()
        _entered.append(settings)  # referenced: a collected generator would leave the context


_entered: list = []


def flow_heartbeats_off() -> contextlib.AbstractContextManager:
    """Prefect's flow-run heartbeats off while the context lasts, unless the user configured them.

    The heartbeat thread sleeps in one-second steps and a flow run waits for it at its end: up to a
    second added to every run, which is most of a no-change ingest (measured: 0.86 s of 1.09 s).
    Heartbeats only serve a zombie-run automation; kbflow records every run in its own `runs`
    table, and a run started by a deployment (Prefect's runner sets PREFECT__FLOW_RUN_ID) keeps them.
    A settings context belongs to one thread: a thread that runs flows (the warm worker's
    request threads) enters its own.
    """
    names = ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY", "PREFECT__FLOW_RUN_ID")
    if any(os.environ.get(name) for name in names):
        return contextlib.nullcontext()
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


def without_flow_heartbeats() -> None:
    """Flow-run heartbeats off in this thread for the rest of the process (see flow_heartbeats_off)."""
    settings = flow_heartbeats_off()
    settings.__enter__()
    _entered.append(settings)


_temporary_urls: set[str] = set()


def is_temporary(url: str) -> bool:
    """Whether `url` is a temporary server this process started (it ends with the process)."""
    return url in _temporary_urls


class TemporaryServer:
    """A Prefect API server bound to this process: gone when it exits, `kill -9` included."""

    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        _temporary_urls.add(self.url)
        env = _server_environment(home) | {
            # as Prefect's own temporary server: no UI, ephemeral mode
            "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=die_with_parent,
        )
        atexit.register(self.stop)

    def ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Block until the server answers (it started at construction, beside the caller's own work)."""
        _wait_healthy(self.url, self.process, timeout, None)

    def stop(self) -> None:
        if self.process.poll() is None:
            stop_group(self.process.pid, timeout=5.0)


def die_with_parent() -> None:
    """In a child before exec: SIGKILL it when the parent dies (Linux PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class PrefectApi:
    """The API a command's flows report to, found (or started) before Prefect is imported."""

    def __init__(self, url: str | None, kind: str, server: TemporaryServer | None = None) -> None:
        self.url, self.kind, self.server = url, kind, server

    def ready(self) -> PrefectApi:
        """Wait for a temporary server to answer, then point Prefect at it."""
        if self.server is not None:
            self.server.ready()
            use_api(self.server.url)
        return self


def connect(config: KbflowConfig, temporary: bool = True) -> PrefectApi:
    """The Prefect API for a flow-running command: explicit, else kbflow's server, else a temporary one.

    A temporary server starts here and answers by `ready()`: the caller imports its
    flows meanwhile. `temporary=False` leaves the choice to Prefect (its own temporary
    server) when nothing is configured.
    """
    explicit = explicit_api_url()
    if explicit:
        return PrefectApi(explicit, "explicit")
    running = recorded_server(config)
    if running is not None and running.alive:
        use_api(running.url)
        return PrefectApi(running.url, "kbflow server")
    if not temporary:
        return PrefectApi(None, "prefect temporary")
    server = TemporaryServer(prefect_home(config))
    return PrefectApi(server.url, "temporary", server)
