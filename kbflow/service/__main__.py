"""The service process: `python -m kbflow.service CONFIG` (started by `kbflow server start` or autostart).

Binds the store's socket (mode 0600, in a 0700 folder checked by kbflow.client), records itself in
`service.json` (pid, start time: what `kbflow server stop` checks before signalling), warms up in a
thread, serves until stopped or idle for `[server] idle_timeout_min`. SIGTERM cancels running commands
at their next batch boundary (each recorded as failed, its client told in one line) and then exits.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path

import uvicorn

from kbflow import set_process_defaults
from kbflow.client import (
    SERVICE_MARKER, checked_socket_path, environment_digest, private_dir, record_service, recorded_service,
    service_file, service_home,
)
from kbflow.procs import same_process
from kbflow.config import load_config
from kbflow.prefect_api import connect, use_api
from kbflow.service.app import Service, create_app

IDLE_CHECK_S = 5.0


class ServiceServer(uvicorn.Server):
    """uvicorn, whose stop first cancels the running commands (so their runs are recorded as failed)."""

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service

    def handle_exit(self, sig, frame) -> None:
        self.service.cancel_all("the kbflow service is stopping (`kbflow server stop`)")
        super().handle_exit(sig, frame)


def bind(path: Path) -> socket.socket:
    """A listening Unix socket at `path`, mode 0600 from its creation on."""
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)  # set before any other thread starts: the socket is never wider than 0600
    try:
        listener.bind(str(path))
    finally:
        os.umask(previous)
    listener.listen(64)
    return listener


def watch_idle(server: ServiceServer, service: Service, idle_s: float) -> None:
    while not server.should_exit:
        if service.idle_for() > idle_s:
            logging.getLogger("kbflow.service").warning("idle for %.0f min: stopping", idle_s / 60)
            server.should_exit = True
            return
        time.sleep(IDLE_CHECK_S)


def main(config_path: str) -> None:
    set_process_defaults()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = load_config(config_path)
    config.store.create_folder()
    record = recorded_service(config)
    if record is not None and record["pid"] != os.getpid() and \
            same_process(record["pid"], record.get("started"), SERVICE_MARKER):
        sys.exit(f"a kbflow service already serves this store (pid {record['pid']}); not starting another")
    home = private_dir(service_home(config))
    service = Service(config, environment_digest(config), home / "service.log")
    path = checked_socket_path(config)
    listener = bind(path)
    record_service(config, path, service.log_path)
    server = ServiceServer(uvicorn.Config(create_app(service), log_level="warning", access_log=False,
                                          lifespan="off", timeout_graceful_shutdown=None), service)
    # The Prefect API before Prefect is imported: its settings, read at import, hold it for every thread.
    api = connect(config)  # a temporary server (one without `kbflow server`) starts beside the warm-up
    if api.server is not None:
        use_api(api.server.url, api.server.auth)
    threading.Thread(target=service.warm, args=(api,), name="kbflow warm-up", daemon=True).start()
    idle_s = config.server.idle_timeout_min * 60
    threading.Thread(target=watch_idle, args=(server, service, idle_s), name="kbflow idle", daemon=True).start()
    try:
        server.run(sockets=[listener])
    finally:
        record = service_file(config)
        try:
            if record.is_file() and f'"pid": {os.getpid()},' in record.read_text(encoding="utf-8"):
                record.unlink()
                path.unlink(missing_ok=True)
        except OSError:
            pass


if __name__ == "__main__":
    main(sys.argv[1])
