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

import typer
from rich.console import Console
from rich.markup import escape

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
PrincipalOption = Annotated[list[str] | None, typer.Option(
    "--principal", help="who asks (repeatable: a user and their groups); with [access] mode = \"enforce\"")]
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
    """Errors whose message is the whole story for a user: printed, exit 1, no traceback."""
    from kbflow.config import ConfigError
    from kbflow.errors import ModelMismatch, SourceUnreachable
    from kbflow.models import ModelNotAvailable
    from kbflow.store import StoreEmpty

    return (ConfigError, ModelMismatch, ModelNotAvailable, StoreEmpty, FileNotFoundError, FileExistsError,
            LookupError, ValueError, SourceUnreachable)


Command = TypeVar("Command", bound=Callable[..., Any])


# KBFLOW_DEBUG=1: a known error ends with its traceback instead of the one-line message.
DEBUG = "KBFLOW_DEBUG"


def reports_errors(command: Command) -> Command:
    """A command whose known errors (bad config, missing store, wrong input) end as `error: …`, exit 1."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except Exception as error:
            if isinstance(error, known_errors()) and os.environ.get(DEBUG) != "1":
                raise fail(str(error) + raised_outside_kbflow(error)) from None
            raise

    return run  # type: ignore[return-value]


def raised_outside_kbflow(error: BaseException) -> str:
    """Where a library raised `error`, for its one-line message ("" when kbflow raised it).

    A ValueError or LookupError from a library is printed as a message too, and may be a defect,
    not the user's input: the line says where it came from and how to see the whole traceback.
    """
    frame = None
    for frame, _ in traceback.walk_tb(error.__traceback__):
        pass
    module = frame.f_globals.get("__name__", "") if frame is not None else "kbflow"
    if module == "kbflow" or module.startswith("kbflow."):
        return ""
    return f" (raised in {module}, line {frame.f_lineno}; {DEBUG}=1 shows the traceback)"


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
