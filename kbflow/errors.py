"""Typed errors a run can end with; each message says what failed and what to do.

Every error a user can meet and act on derives from `KbflowError`: the CLI prints its message as
one line (`error: …`) and exits with its `exit_code`. Anything else is a defect: the CLI writes its
traceback to a log file and prints one line saying where (kbflow.cli.common.reports_errors).
Each error also keeps the builtin base its callers catch (ValueError, LookupError, RuntimeError, …).
"""

from __future__ import annotations

from typing import Any

EXIT_ERROR, EXIT_BLOCKED = 1, 3  # the CLI's exit codes for errors (kbflow.cli.common lists them all)


class KbflowError(Exception):
    """An expected error: its message is the whole story for a user (what failed and what to do)."""

    exit_code = EXIT_ERROR


class InvalidInput(KbflowError, ValueError):
    """Input the user gave (a file, an option, a query) that cannot be used; the message says why."""


class ConfigError(KbflowError, ValueError):
    """A config that cannot be used; the message names the key and the fix. (Here, not in
    kbflow.config, so that the source kinds of kbflow.sources, which the config imports, raise it too.)"""


class NotFound(KbflowError, LookupError):
    """Something the user named (a run, a chunk, a dataset split) does not exist."""


class MissingFile(KbflowError, FileNotFoundError):
    """A file or folder the command needs is not there; the message says how to make it."""


class OutputExists(KbflowError, FileExistsError):
    """Where a command would write is taken; the message says what to choose instead."""


class QualityGateFailed(KbflowError, RuntimeError):
    """A blocking expectation failed, so nothing was published.

    `failures` are the failed expectation outcomes (kbflow.tasks.quality.suites.ExpectationOutcome);
    `report` is the run's report once the run has been recorded.
    """

    exit_code = EXIT_BLOCKED

    def __init__(self, failures: list[Any]) -> None:
        self.failures = failures
        self.report: dict[str, Any] | None = None
        super().__init__("data-quality gate blocked the publish: " + "; ".join(_described(f) for f in failures))

    def failure_dicts(self) -> list[dict[str, Any]]:
        """The failed expectations as JSON-able dicts, each with its suite."""
        return [{"suite": f.suite, **f.as_dict()} for f in self.failures]

    def blocked_report(self) -> dict[str, Any]:
        """The run report with status "blocked" and the failed expectations."""
        return {**(self.report or {}), "status": "blocked", "failures": self.failure_dicts()}


def _described(failure: Any) -> str:
    """A failed expectation in numbers (its `message`), with the way out where there is one."""
    text = getattr(failure, "message", "") or f"{failure.suite}.{failure.type}({failure.column or 'table'})"
    if failure.column in {"deleted_share", "document_count_ratio"}:
        text += " (an intended mass deletion: kbflow ingest --allow-mass-delete)"
    return text


class RunRefused(KbflowError, RuntimeError):
    """A run that would harm the index was refused before it changed anything: recorded
    as `refused`, not `failed`, and with no data-quality outcome (no check ran)."""


class ModelMismatch(RunRefused):
    """The configured embedding model is not the one the index was built with."""

    def __init__(self, configured: str, indexed: str) -> None:
        self.configured, self.indexed = configured, indexed
        super().__init__(
            f"the index holds vectors of {indexed!r} but embedding.model is {configured!r}; "
            "vectors of two models must not mix. Set embedding.model back, or re-embed "
            "everything with `kbflow reindex`."
        )


class PromotionRefused(RunRefused):
    """`kbflow reindex` built the new index, but the configured queries score worse on it than on
    the current one by more than `[evaluation] max_mrr_drop`: the index was not switched."""

    exit_code = EXIT_BLOCKED

    def __init__(self, line: str) -> None:
        super().__init__(f"reindex {line}; the index was not switched (kbflow reindex --allow-worse switches anyway)")


class SourceUnreachable(KbflowError, RuntimeError):
    """A source that cannot be listed or read at all (unreachable endpoint or database, wrong
    credentials, missing bucket or table, missing backend package or driver): the run fails
    before it writes anything. The message names the source and the endpoint or host, never a
    credential."""
