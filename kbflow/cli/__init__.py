"""The `kbflow` command line, the top floor: tables for people, `--json` for machines.

Each module holds one family of commands (index, inspect, serve, datasets, evaluate) and
registers them on the one Typer app of kbflow.cli.common. Commands import flows and tasks
lazily, inside the command, so that a command pays only for what it runs.
"""

from __future__ import annotations

import os
import sys

from kbflow import set_process_defaults
from kbflow.cli import datasets, evaluate, index, inspect, serve, served, server  # noqa: F401  - registers the commands
from kbflow.cli.common import FORCE_PROGRESS, app

__all__ = ["app", "main"]


def main() -> None:
    """Console entry point: kbflow's process defaults, quiet library logging unless asked, then the app."""
    set_process_defaults()
    if "--progress" in sys.argv:  # progress on stderr even with --json (kbflow.cli.common.progress_bars)
        sys.argv.remove("--progress")
        os.environ[FORCE_PROGRESS] = "1"
    verbose = "--verbose" in sys.argv
    if verbose:
        sys.argv.remove("--verbose")
    else:
        # The CLI reports outcomes itself (a blocked gate is an exit code, not a traceback);
        # Prefect's own log lines stay in the Prefect UI, or on the terminal with --verbose.
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")  # --runner dask: no cluster chatter
    # With --verbose, flows run here: Prefect's log lines go where this process's logging sends them
    # (the kbflow service's go to its log file).
    served.in_process_only = verbose
    app()


if __name__ == "__main__":
    main()
