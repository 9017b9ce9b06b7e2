"""kbflow.procs and `kbflow server stop`: a recorded pid that another process reuses is never signalled (issue 26 #6)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from typer.testing import CliRunner

from kbflow.cli import app
from kbflow.client import service_file, service_home
from kbflow.config import load_config
from kbflow.procs import identity, same_process

from conftest import DOCS_SOURCE, write_config


def test_same_process_needs_the_start_time_and_the_command_line():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "kbflow.service"])
    try:
        me = identity(sleeper.pid)
        assert me is not None
        assert same_process(sleeper.pid, me.started, "kbflow.service")  # positive control
        assert not same_process(sleeper.pid, me.started - 5, "kbflow.service")  # an older process had the pid
        assert not same_process(sleeper.pid, me.started, "prefect")  # another program
        assert not same_process(sleeper.pid, None, "kbflow.service")
    finally:
        sleeper.kill()
        sleeper.wait()


def test_server_stop_with_a_stale_record_leaves_the_process_that_reused_the_pid_alone(tmp_path):
    config_path = write_config(tmp_path, DOCS_SOURCE)
    config = load_config(config_path)
    # An unrelated process whose command line even names the service: only its start time differs.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "kbflow.service"],
                                 start_new_session=True)  # a group leader, as a daemon that reused the pid is
    try:
        started = identity(bystander.pid).started
        service_home(config).mkdir(parents=True)
        stale = {"pid": bystander.pid, "started": started - 100, "socket": str(tmp_path / "gone.sock")}
        service_file(config).write_text(json.dumps(stale))
        (service_home(config).parent / "prefect").mkdir()
        (service_home(config).parent / "prefect" / "server.json").write_text(json.dumps(
            {"pid": bystander.pid, "url": "http://127.0.0.1:9/api", "ui": "http://127.0.0.1:9", "home": str(tmp_path),
             "log": str(tmp_path / "log"), "started_at": time.time(), "started": started - 100}))
        done = CliRunner().invoke(app, ["server", "stop", "--config", str(config_path), "--json"])
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["worker_pid"] is None
        time.sleep(0.5)
        assert bystander.poll() is None  # still running: neither stop signalled it
        assert not service_file(config).exists()  # the stale record is gone
    finally:
        bystander.kill()
        bystander.wait()
