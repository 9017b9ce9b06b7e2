"""What every command shares: the app, consoles, options, JSON output, errors, progress.

Exit codes: 0 success, 1 an error with a message on stderr, 2 a usage error,
3 a data-quality gate blocked the publish, 4 `dataset check` found stale rows.
With `--json`, stdout carries only JSON.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import click
import typer
from rich.console import Console
from rich.markup import escape

from kbflow.config import cache_dir, load_config
from kbflow.errors import KbflowError

EXIT_ERROR, EXIT_USAGE, EXIT_BLOCKED, EXIT_STALE = 1, 2, 3, 4

app = typer.Typer(
    name="kbflow",
    help="A data pipeline for RAG and fine-tuning: checked, traceable, always current.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
stdout = Console()
stderr = Console(stderr=True)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", envvar="KBFLOW_CONFIG", help="path to kbflow.toml")
]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON only, for machines")]
RunOption = Annotated[str | None, typer.Option("--run", help="a run id (default: the last run)")]


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    """Print `error: message` on stderr; raise the returned Exit. The message is text, never markup."""
    stderr.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def known_errors() -> tuple[type[Exception], ...]:
    """Errors whose message is the whole story for a user: printed as one line, no traceback.

    kbflow's own (KbflowError), and the standard library's errors about a path the user named
    (missing, taken, not allowed), whose message names that path.
    """
    return (KbflowError, FileNotFoundError, FileExistsError, PermissionError, NotADirectoryError, IsADirectoryError)


Command = TypeVar("Command", bound=Callable[..., Any])


# KBFLOW_DEBUG=1: a failed command ends with its traceback instead of the one-line message.
DEBUG = "KBFLOW_DEBUG"
INTERNAL_ERRORS_LOG = "internal-errors.log"


def reports_errors(command: Command) -> Command:
    """A command that ends in one line on stderr when it fails: `error: …` with the error's exit code
    for a known error (bad config, missing store, wrong input, a blocked gate), and for any other
    error `error: internal error …` saying which file holds its traceback (exit 1)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.ClickException):  # already a message and an exit code
            raise
        except Exception as error:
            if os.environ.get(DEBUG) == "1":
                raise
            if isinstance(error, known_errors()):
                raise fail(str(error), getattr(error, "exit_code", EXIT_ERROR)) from None
            log = log_internal_error(error, kwargs.get("config"))
            raise fail(internal_error_line(error, log)) from None

    return run  # type: ignore[return-value]


def internal_error_line(error: BaseException, log: Path | None) -> str:
    """The one line a user sees for an error kbflow did not expect: what it was and where its traceback is."""
    first = (str(error).strip().splitlines() or [""])[0]
    summary = f"{type(error).__name__}: {first[:300]}" if first else type(error).__name__
    where = f"the traceback is in {log}" if log is not None else "the traceback could not be written"
    return f"internal error ({summary}); {where}; {DEBUG}=1 prints it here"


def log_internal_error(error: BaseException, config_path: Path | str | None) -> Path | None:
    """Append `error`'s traceback, with the command line and the time, to the internal-errors log;
    its path (None when no log could be written: the one-line message still goes out)."""
    path = internal_errors_log(config_path)
    text = "".join(traceback.format_exception(error))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as log:
            log.write(f"--- {datetime.now().astimezone().isoformat(timespec='seconds')} "
                      f"pid {os.getpid()}: kbflow {' '.join(sys.argv[1:])}\n{text}\n")
    except OSError:
        return None
    return path


def internal_errors_log(config_path: Path | str | None) -> Path:
    """Where internal errors are logged: logs/ in the config's local store when that store exists
    (beside the run it concerns), else logs/ in kbflow's per-user cache (KBFLOW_CACHE_DIR)."""
    try:
        store = load_config(config_path).store if config_path is not None else None
    except Exception:  # noqa: BLE001 - the config may be what failed; the cache folder still takes the log
        store = None
    if store is not None and store.is_local and Path(store.uri).is_dir():
        return Path(store.uri) / "logs" / INTERNAL_ERRORS_LOG
    return cache_dir() / "logs" / INTERNAL_ERRORS_LOG


# `--progress` (any command; taken off the command line by kbflow.cli.main): progress on stderr even
# with --json or when stderr is not a terminal (then as plain lines, at most one a second per stage).
FORCE_PROGRESS = "KBFLOW_PROGRESS"


class progress_bars:
    """Progress bars on stderr fed by kbflow.progress reports (a no-op when disabled).

    A "starting" line shows from the first second, until the work reports its first progress.
    """

    def __init__(self, enabled: bool) -> None:
        forced = os.environ.get(FORCE_PROGRESS) == "1"
        self.enabled = (enabled and stderr.is_terminal) or forced
        self.lines = forced and not stderr.is_terminal

    def __enter__(self) -> None:
        if not self.enabled:
            return
        if self.lines:
            return self._enter_lines()
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from kbflow import progress

        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=stderr, transient=True,
        )
        self.tasks: dict[str, int] = {}
        self.bar.start()
        starting = self.bar.add_task("starting", total=None)

        def update(stage: str, done: int, total: int) -> None:
            if starting in self.bar.task_ids:
                self.bar.remove_task(starting)
            if stage not in self.tasks:
                self.tasks[stage] = self.bar.add_task(stage, total=total)
            self.bar.update(self.tasks[stage], completed=done, total=total)

        progress.listen(update)

    def _enter_lines(self) -> None:
        from kbflow import progress

        printed: dict[str, float] = {}

        def update(stage: str, done: int, total: int) -> None:
            now = time.monotonic()
            if done >= total or now - printed.get(stage, 0.0) >= 1.0:
                printed[stage] = now
                stderr.print(f"{stage} {done}/{total}", highlight=False)

        progress.listen(update)

    def __exit__(self, *exc_info) -> None:
        if self.enabled:
            from kbflow import progress

            progress.listen(None)
            if not self.lines:
                self.bar.stop()
