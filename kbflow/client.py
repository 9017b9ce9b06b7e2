"""A small synchronous client of the local kbflow service (kbflow.service), for the CLI and applications.

    from kbflow.client import Client
    hits = Client(config="kbflow.toml").search("How do I restore a snapshot?", k=5)

The service of a store listens on a Unix socket in a folder only its owner can use: `<store>/service/`
(created 0700; its owner and mode are checked before every connection), or, when that path is too long
for a socket, a folder of the same kind under `$XDG_RUNTIME_DIR/kbflow/` or `~/.cache/kbflow/run/`. The
client checks the peer's uid (SO_PEERCRED) before it sends anything, and sends only what the command
needs: its arguments, the config's path and the `KBFLOW_*` config overrides, never the environment.
A handshake compares the service's kbflow version and code hash with this process's: a service that
runs other code is stopped and started again (autostart), or refused with a message.

Importing this module costs no Prefect, torch or LanceDB import: the CLI imports it on every command.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpcore
import httpx

from kbflow import __version__
from kbflow.config import ENV_PREFIX, PROCESS_VARIABLES, KbflowConfig, load_config
from kbflow.errors import EXIT_BLOCKED, KbflowError
from kbflow.procs import identity, same_process, terminate

NO_SERVER_VARIABLES = ("KBFLOW_NO_SERVER", "KBFLOW_NO_WORKER")  # the second: the warm worker's old switch
SERVICE_FILE = "service.json"
SOCKET_NAME = "kbflow.sock"
SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux
SERVICE_MARKER = "kbflow.service"  # in the service's command line: `python -m kbflow.service`
CONNECT_TIMEOUT_S = 2.0
HELLO_TIMEOUT_S = 15.0  # a busy service still answers; the GIL is shared with its imports and runs
START_TIMEOUT_S = 60.0
# Variables whose value changes what a run reads or where it reports: a service started with other
# values would run a command differently, so their digest (never their values) must match.
ENVIRONMENT_PREFIXES = ("PREFECT_API_", "AWS_", "GOOGLE_", "GCS", "AZURE_", "HF_", "SSL_CERT", "REQUESTS_CA")


class ServiceUnavailable(Exception):
    """No service serves this command (none runs, it refused, or it is not safe to talk to): run in-process."""


class UnsafeService(ServiceUnavailable):
    """The socket's folder or its peer is not this user's alone: nothing is sent."""


class ServiceLost(Exception):
    """The service ended in the middle of a command (stopped, killed)."""


class CommandFailed(KbflowError):
    """The command failed in the service with a message for the user (exit code `exit_code`)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class CommandBlocked(KbflowError):
    """A data-quality gate blocked the command: its report (ingest, reindex) or failures (dataset build)."""

    exit_code = EXIT_BLOCKED

    def __init__(self, message: str, report: dict[str, Any] | None = None,
                 failures: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.report, self.failures = report, failures or []


# -- where a store's service is --------------------------------------------------------------------


def service_home(config: KbflowConfig) -> Path:
    """`<store>/service` (a local store), else `.kbflow-service` beside the config: record, log, socket."""
    if config.store.is_local:
        return Path(config.store.uri) / "service"
    return config.root / ".kbflow-service"


def private_dir(path: Path) -> Path:
    """`path`, created 0700 if missing, checked: a real folder, this user's, no access for anyone else."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(path)
    import stat

    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeService(f"{path} is not a folder (a link?); the kbflow service's socket is not used")
    if info.st_uid != os.getuid():
        raise UnsafeService(f"{path} belongs to uid {info.st_uid}, not to you; the kbflow service's socket is not used")
    if info.st_mode & 0o077:
        raise UnsafeService(f"{path} is open to other users (mode {info.st_mode & 0o777:o}, must be 700); "
                            f"`chmod 700 {path}` or remove it")
    return path


def socket_path(config: KbflowConfig) -> Path:
    """The service's socket: in `service_home`, or in a per-user 0700 folder when that path is too long."""
    path = service_home(config) / SOCKET_NAME
    if len(str(path)) <= SOCKET_PATH_MAX:
        return path
    digest = hashlib.sha256(config.store.uri.encode()).hexdigest()[:16]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "kbflow" if runtime else Path.home() / ".cache" / "kbflow" / "run"
    return base / digest / SOCKET_NAME


def checked_socket_path(config: KbflowConfig) -> Path:
    """`socket_path`, its folder (and, for a fallback, the per-user folder above it) created and checked."""
    path = socket_path(config)
    config.store.create_folder()
    if path.parent != service_home(config):
        private_dir(path.parent.parent)
    private_dir(path.parent)
    return path


def check_peer(sock: socket.socket) -> None:
    """Refuse a peer that is not this user's process (SO_PEERCRED: the kernel's word, not the peer's)."""
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", credentials)
    if uid != os.getuid():
        sock.close()
        raise UnsafeService(f"the process on the kbflow socket runs as uid {uid}, not as you; nothing was sent")


def code_hash() -> str:
    """A digest of the installed kbflow code (every .py file's path, size and mtime): changes on an upgrade or edit."""
    import importlib.util

    digest = hashlib.sha256(__version__.encode())
    for name in ("kbflow", "kbflow.flows", "kbflow.tasks"):
        spec = importlib.util.find_spec(name)
        for folder in spec.submodule_search_locations or []:
            for path in sorted(Path(folder).rglob("*.py")):
                info = path.stat()
                digest.update(f"{path}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def environment_digest(config: KbflowConfig, environ: dict[str, str] | None = None) -> str:
    """A digest of the variables that change how a command runs here (see ENVIRONMENT_PREFIXES)."""
    from kbflow.prefect_api import explicit_api_url

    environ = dict(os.environ if environ is None else environ)
    names = {name for name in environ if name.startswith(ENVIRONMENT_PREFIXES)}
    names |= {s.url_env for s in config.sources if getattr(s, "url_env", None)}
    pairs = sorted((name, environ.get(name, "")) for name in names)
    pairs.append(("prefect api", explicit_api_url() or ""))
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()[:16]


def config_overrides(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The `KBFLOW_SECTION__KEY` config overrides of this process: all a service needs of its environment."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if k.startswith(ENV_PREFIX) and k not in PROCESS_VARIABLES}


def disabled() -> bool:
    """KBFLOW_NO_SERVER=1: never use or start a service; every command runs in its own process."""
    return any(os.environ.get(name, "") not in ("", "0") for name in NO_SERVER_VARIABLES)


# -- the record of a running service -------------------------------------------------------------


def service_file(config: KbflowConfig) -> Path:
    return service_home(config) / SERVICE_FILE


def recorded_service(config: KbflowConfig) -> dict[str, Any] | None:
    try:
        return json.loads(service_file(config).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def record_service(config: KbflowConfig, socket_file: Path, log: Path) -> None:
    """Written by the service once it listens: what `stop` checks before it signals anything."""
    me = identity(os.getpid())
    record = {"pid": os.getpid(), "started": me.started if me else None, "socket": str(socket_file),
              "log": str(log), "version": __version__, "started_at": time.time()}
    private_dir(service_home(config))
    service_file(config).write_text(json.dumps(record), encoding="utf-8")


def stop_service(config: KbflowConfig, timeout: float = 60.0) -> dict[str, Any] | None:
    """Stop the recorded service if it is still that process (start time, command line); its record, or None.

    The service cancels its running commands at their next batch boundary (recorded as failed) before it
    exits; after `timeout` it is killed.
    """
    record = recorded_service(config)
    if record is None:
        return None
    if same_process(record["pid"], record.get("started"), SERVICE_MARKER):
        terminate(record["pid"], timeout, group=False)
        record["stopped"] = True
    else:
        record["stopped"] = False  # gone already, or the pid is another process's now: not signalled
    service_file(config).unlink(missing_ok=True)
    Path(record.get("socket") or socket_path(config)).unlink(missing_ok=True)
    return record


def start_service(config_path: Path, config: KbflowConfig, api_url: str | None = None,
                  timeout: float = START_TIMEOUT_S) -> Client | None:
    """Start the store's service in the background (its own session) and wait until it answers; None if it did not.

    A recorded service that is still alive (starting, or too busy to answer at once) is waited for, never
    doubled: a second one would take over the socket and leave the first running unreachable.
    """
    checked_socket_path(config)
    record = recorded_service(config)
    process = None
    if record is None or not same_process(record["pid"], record.get("started"), SERVICE_MARKER):
        env = dict(os.environ)
        for name in NO_SERVER_VARIABLES:
            env.pop(name, None)
        if api_url:
            env["PREFECT_API_URL"] = api_url
        with (service_home(config) / "service.log").open("ab") as log:
            process = subprocess.Popen([sys.executable, "-m", SERVICE_MARKER, str(config_path.resolve())],
                                       env=env, cwd=str(config.root), stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    client = Client(config_path, config=config)
    while time.monotonic() < deadline and (process is None or process.poll() is None):
        try:
            client.hello(timeout=HELLO_TIMEOUT_S)
            return client
        except UnsafeService:
            raise
        except ServiceUnavailable:
            time.sleep(0.2)
    return None


@dataclass
class Connected:
    client: Client
    started: bool  # this command started it (say so once)


def connect(config_path: Path, config: KbflowConfig, autostart: bool | None = None) -> Connected | None:
    """The store's service for a command: the running one, or one started now (autostart); None: run in-process.

    A stale socket (nobody listening) or a service that runs other code (version or code hash) is
    replaced when autostart is on; otherwise the command runs in-process (said on stderr by the caller).
    """
    if disabled():
        return None
    autostart = config.server.autostart if autostart is None else autostart
    client = Client(config_path, config=config)
    try:
        hello = client.hello()
        if hello.get("code_hash") == code_hash():
            return Connected(client, False)
        if not autostart:
            raise ServiceUnavailable(f"runs kbflow code older than this command's ({hello.get('version')}); "
                                     f"restart it: `kbflow server stop --config {config_path}`")
        stop_service(config)
    except UnsafeService:
        raise
    except ServiceUnavailable:
        if not autostart:
            return None
        record = recorded_service(config)
        if record is not None and same_process(record["pid"], record.get("started"), SERVICE_MARKER):
            return None  # alive but not answering (starting, or stuck): leave it, run here
        socket_path(config).unlink(missing_ok=True)  # a stale socket: nobody listens there
    started = start_service(config_path, config)
    return Connected(started, True) if started is not None else None


# -- the client -----------------------------------------------------------------------------------


class _PeerCheckedBackend(httpcore.SyncBackend):
    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        stream = super().connect_unix_socket(path, timeout=timeout, socket_options=socket_options)
        check_peer(stream.get_extra_info("socket"))
        return stream


class _UnixTransport(httpx.HTTPTransport):
    """httpx over the service's socket, the peer's uid checked on every new connection.

    httpx has no hook between connect and send, so its connection pool (`_pool`, private but
    stable across httpx 0.2x) is replaced by one on a network backend that checks the peer.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(uds=str(path))
        self._pool = httpcore.ConnectionPool(uds=str(path), network_backend=_PeerCheckedBackend())


Event = Callable[[dict[str, Any]], None]


class Client:
    """The kbflow service of the store a config names: `search`, and `call` for any command."""

    def __init__(self, config_path: str | Path = "kbflow.toml", config: KbflowConfig | None = None) -> None:
        self.config_path = Path(config_path).expanduser().resolve()
        self.config = config if config is not None else load_config(self.config_path)
        self.socket = socket_path(self.config)

    def _http(self, timeout: float | None) -> httpx.Client:
        if not self.socket.exists():
            raise ServiceUnavailable("is not running")
        checked_socket_path(self.config)  # nothing is sent through a socket others could have placed
        return httpx.Client(transport=_UnixTransport(self.socket), base_url="http://kbflow",
                            timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT_S))

    def hello(self, timeout: float = HELLO_TIMEOUT_S) -> dict[str, Any]:
        """The service's version, code hash, pid and counters; ServiceUnavailable when none answers."""
        try:
            with self._http(timeout) as http:
                answer = http.get("/v1/hello")
        except httpx.HTTPError as error:
            raise ServiceUnavailable(f"did not answer ({error})") from None
        if answer.status_code != 200:
            raise ServiceUnavailable(f"answered {answer.status_code}")
        hello = answer.json()
        if hello.get("store") != self.config.store.uri:
            raise ServiceUnavailable(f"serves the store {hello.get('store')}, not {self.config.store.uri}")
        return hello

    def call(self, command: str, arguments: dict[str, Any], on_event: Event | None = None) -> Any:
        """Run `command` in the service; its result (the command's `--json` contract).

        `on_event` gets each progress and note event as it comes. Raises CommandFailed or
        CommandBlocked as the command would fail in-process, ServiceUnavailable when the service
        refused it before it ran (run it in-process), ServiceLost when the service ended meanwhile.
        """
        body = {"config": str(self.config_path), "environ": config_overrides(),
                "environment_digest": environment_digest(self.config), "arguments": arguments}
        started = False
        try:
            with self._http(None) as http, http.stream("POST", f"/v1/{command}", json=body) as response:
                if response.status_code != 200:
                    raise ServiceUnavailable(f"answered {response.status_code} to {command}")
                for event in _events(response.iter_lines()):
                    started = True
                    if "result" in event:
                        return event["result"]
                    if "error" in event:
                        _raise(event["error"])
                    if on_event is not None:
                        on_event(event)
        except httpx.HTTPError as error:
            if not started:
                raise ServiceUnavailable(f"did not answer ({error})") from None
            raise ServiceLost(str(error)) from None
        raise ServiceLost("the answer ended without a result")

    def search(self, query: str | list[str], k: int = 10, tenant: str | None = None, mode: str | None = None,
               principals: list[str] | None = None) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Hits for one query (a list of hits), or for each of several (a list of lists).

        `principals`: who asks (a user and their groups), as `kbflow search --principal`; under
        `[access] mode = "enforce"` only documents whose ACL holds one of them are searched.
        """
        texts = [query] if isinstance(query, str) else list(query)
        answer = self.call("search", {"texts": texts, "k": k, "tenant": tenant, "mode": mode,
                                      "principals": principals})
        return answer["results"][0] if isinstance(query, str) else answer["results"]


def _events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.strip():
            yield json.loads(line)


def _raise(error: dict[str, Any]) -> None:
    kind, message = error.get("kind"), error.get("message", "")
    if kind == "refused":
        raise ServiceUnavailable(message)
    if kind == "blocked":
        raise CommandBlocked(message, error.get("report"), error.get("failures"))
    raise CommandFailed(message, int(error.get("exit", 1)))
