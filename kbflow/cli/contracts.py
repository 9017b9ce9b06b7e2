"""What each command prints with `--json`, and what each exit code means: the machine contract.

The docs' reference pages (Reference > JSON output, Exit codes) are generated from these two
tables, and tests/test_docs.py fails when a command with a `--json` option has no entry here, so
the contract is written once, beside the commands. The shapes themselves are pinned by the
commands' own tests (tests/test_cli*.py); keys are only ever added, never renamed.
"""

from __future__ import annotations

from kbflow.cli.common import EXIT_BLOCKED, EXIT_ERROR, EXIT_STALE, EXIT_USAGE

_RUN_REPORT = (
    '`{"run_id", "status", "documents": {"new", "changed", "unchanged", "deleted", "quarantined"}, '
    '"chunks": {"embedded", "reused", "deleted", "total"}, "duration_s"}`, plus `"warnings"` when there are any '
    "(a source that yields no documents). `status` is `published`, `no_change` or `blocked` (then also "
    '`"failures"`); `chunks.total` is the index\'s total (a blocked run\'s is the unchanged index\'s). '
    "`documents` counts against the `documents` table: `new` / `changed` the documents the run indexed new or "
    "changed, `unchanged` those whose content the index already has (a file set aside before included: not "
    "retried until it changes), `deleted` those gone from their source, `quarantined` the items it set aside. "
    "An item set aside whole, by discovery, parse or the documents check, a file or a sql row alike, counts in "
    "`quarantined` only, never as `new` or `changed`; a document that loses only some chunks to a check counts "
    "in both."
)

# Command path (as typed after `kbflow`) -> what `--json` prints on stdout (Markdown).
JSON_OUTPUT: dict[str, str] = {
    "ingest": _RUN_REPORT,
    "reindex": "The run report of `ingest`, for the reindex run (staged, checked, then switched).",
    "rollback": 'The run report of `ingest`, for the rollback run, plus `"restored_run_id"`: the run whose '
                "table versions were restored.",
    "search": 'A list of hits `{"chunk_id", "doc_id", "uri", "source", "tenant", "score", "text", "heading"}` '
              '(and `"rerank_score"` with a rerank stage). With `--queries FILE.jsonl`: one line '
              '`{"query", "hits": [...]}` per input line, in input order, the model loaded once.',
    "status": '`{"documents", "chunks", "quarantined", "last_run": {...}}`; `quarantined` counts items set aside, '
              "each once however many runs saw it.",
    "quality": '`{"run_id", "success", "suites": [{"name", "success", "expectations": [{"type", "column", '
               '"success", "observed", "unexpected_count", "examples", "thresholds", "message"}]}], '
               '"quarantine": {"count", "rows"}}`; a run that checked nothing has `"success": null` and no suites.',
    "quarantine": 'A list of `{"run_id", "source", "uri", "doc_id", "chunk_id", "stage", "reason", "detail", '
                  '"content_hash", "quarantined_at"}`. With `--run`, every item that run set aside; without, '
                  "each item once (same source, uri, stage, reason and content) with its newest run.",
    "trace": '`{"chunk": {"chunk_id", "ordinal", "heading", "text_hash", "n_tokens", "model", "run_id"}, '
             '"document": {"doc_id", "uri", "content_hash", "title", "status", "n_chunks", "path"}, '
             '"source": {"name", "kind", "path", "tenant"}, "run": {"run_id", "flow", "status", "started_at", '
             '"prefect_flow_run_id", "quality_results"}, "table_version"}`.',
    "runs": "A list of run records, newest first: counts, durations per stage, DQ outcome. `status` is "
            "`published`, `no_change`, `blocked`, `refused` (stopped before it changed anything; `error` says why) "
            "or `failed`; `dq_success` is `true`/`false` when checks ran and `null` when none did; "
            "`chunks.total` is the index's total after the run.",
    "dataset build": '`{"kind", "dir", "rows": {"train", "validation", "test"}, "dropped": {...}, "pii": {...}, '
                     '"checks": {...}}`; a build a check blocked: `{"kind", "status": "blocked", "failures"}` '
                     "(exit 3).",
    "dataset check": '`{"stale", "rows", "deleted", "changed", "examples"}`; exit 4 when `stale` rows exist.',
    "evaluate": 'The first evaluated mode\'s metrics at the top level (`hit@1`, `hit@5`, `hit@10`, `recall@k`, '
                '`mrr@10`, `ndcg@10`; order vector, fts, hybrid) plus `"n"`, `"mode"`, '
                '`"modes": {mode: {..., "per_source": {source: {...}}}}`, `"run_id"`, `"results"` (the results '
                'file) and `"chart"` (the PNG); with `--tune` also the fusion grid and the lines to use.',
    "finetune": '`{"base": {...}, "tuned": {...}, "model_dir", "steps", "train_rows", "minutes", "dataset", '
                '"train_loss", "validation_loss", "total_minutes"}`; `base` and `tuned` hold the metrics of '
                "`evaluate`.",
    "deployments": 'A list of `{"name", "flow", "entrypoint", "parameters", "cron", "on_change", "description"}`, '
                   "one per deployment `kbflow serve` runs for this config.",
    "watch": 'One line per run it starts in its own process: `{"source", ...}` and the run report of `ingest`.',
    "server start": '`{"running", "pid", "url", "ui", "home", "log", "started_at", "worker": {"running", "pid", '
                    '"socket", "store", "api_url", "requests", "busy", "model_loads", "warm_s", "started_at"}}`; '
                    '`worker` is `{"running": false}` when none answers.',
    "server status": "The same object as `server start`; exits 1 when the Prefect server is not running.",
    "server stop": '`{"stopped", "pid", "worker_pid"}`.',
}

# Exit code -> (when, what to do). 0 is success; Typer/Click themselves exit 2 on a usage error.
EXIT_CODES: dict[int, str] = {
    0: "Success (a run with nothing to do, `no_change`, is a success).",
    EXIT_ERROR: "An error; one line on stderr says what and, where it can, what to do. "
                "`KBFLOW_DEBUG=1` shows the traceback of an error kbflow did not raise itself.",
    EXIT_USAGE: "Usage: an unknown command, option or choice (`--mode`, `--kind`), an empty search query.",
    EXIT_BLOCKED: "A data-quality gate blocked the publish (or a dataset build): nothing was written; "
                  "stderr names each failing check with its numbers.",
    EXIT_STALE: "`kbflow dataset check` found rows whose chunk or document was deleted or changed since the build.",
}
