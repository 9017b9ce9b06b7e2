"""Commands that read what runs did: quality, quarantine, trace, runs. None of them starts Prefect."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from kbflow.cli import served
from kbflow.cli.common import ConfigOption, JsonOption, RunOption, app, print_json, reports_errors, stdout
from kbflow.config import load_config
from kbflow.errors import NotFound


DQ_MARKS = {"passed": "✅", "set_aside": "⚠", "blocked": "❌", None: "—"}  # by kbflow.runs.dq_outcome
DQ_LEGEND = "DQ: ✅ passed  ⚠ rows set aside, published  ❌ blocked  — not checked"


@app.command()
@reports_errors
def quality(
    config: ConfigOption = Path("kbflow.toml"),
    run: RunOption = None,
    docs: Annotated[bool, typer.Option("--docs", help="print the path of the GX Data Docs index.html")] = False,
    as_json: JsonOption = False,
) -> None:
    """Data-quality results of the last (or given) run: every expectation, failures first."""
    if docs:  # one site for all runs' validations
        from kbflow.tasks.quality.suites import data_docs_index

        results_dir = load_config(config).quality.results_dir
        index = data_docs_index(results_dir)
        if not index.is_file():
            raise NotFound(f"no Data Docs under {results_dir} yet; run `kbflow ingest` first")
        sys.stdout.write(f"{index}\n")
        return
    answer = served.run("quality", config, {"run": run})
    summary, record = answer["summary"], answer["record"]
    if as_json:
        print_json(summary)
        return
    if not summary["suites"]:  # a refused, failed or no-change run: say why, never "passed"
        why = "nothing changed" if record["status"] == "no_change" else record.get("error") or record["status"]
        stdout.print(f"run {summary['run_id']} ({record['status']}): no checks ran ({why}); "
                     "`kbflow runs` lists earlier runs", markup=False)
    else:
        verdict = "[green]passed[/]" if summary["success"] else "[red]failures[/]"
        stdout.print(f"run {summary['run_id']} ({record['status']}): {verdict}")
    for suite in summary["suites"]:
        stdout.print(quality_table(suite))


def quality_table(suite: dict[str, Any]) -> Table:
    """One suite's expectations: outcome, what was observed (a value or the offending rows), examples."""
    table = Table(title=f"suite {suite['name']}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    for column in ("", "expectation", "column", "on failure", "observed", "examples"):
        table.add_column(column, overflow="fold")
    for e in suite["expectations"]:
        examples = "; ".join(f"{x.get('uri') or x.get('id')}: {x.get('value')}" for x in e["examples"][:3])
        observed = str(e["observed"]) if e["observed"] is not None else f"{e['unexpected_count']} rows"
        table.add_row("✅" if e["success"] else "❌", e["type"].removeprefix("expect_"),
                      "\n".join(filter(None, [e["column"] or "", bounds_text(e.get("thresholds") or [])])),
                      e.get("on_failure", ""), observed, examples)
    return table


def bounds_text(thresholds: list[dict[str, Any]]) -> str:
    """An expectation's bounds as a reader wants them: `≥ 10 (min_document_chars)`, `≤ 256 (max_tokens)`.

    Without them two checks of one column (n_chars ≥ 1 and ≥ min_document_chars) read the same.
    """
    return ", ".join(
        f"{'≥' if t['side'] == 'min' else '≤'} {t['value']}" + (f" ({t['parameter']})" if t.get("parameter") else "")
        for t in thresholds
    )


@app.command()
@reports_errors
def quarantine(config: ConfigOption = Path("kbflow.toml"), run: RunOption = None, as_json: JsonOption = False) -> None:
    """What was set aside, where and why (all runs, or one)."""
    rows = served.run("quarantine", config, {"run": run})
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"quarantine ({len(rows)})")
    for column in ("run", "source", "uri", "stage", "reason", "detail"):
        table.add_column(column, overflow="fold")
    for row in rows:
        # uris and details are data (file names, parser messages), never Rich markup
        table.add_row(row["run_id"], row["source"], escape(row["uri"]), row["stage"], row["reason"],
                      escape((row["detail"] or "")[:120]))
    stdout.print(table)


@app.command()
@reports_errors
def trace(
    chunk_id: Annotated[str, typer.Argument(help="a chunk_id from search results")],
    config: ConfigOption = Path("kbflow.toml"),
    as_json: JsonOption = False,
) -> None:
    """Where a chunk comes from: document, source, the run that wrote it, the table version."""
    lineage = served.run("trace", config, {"chunk_id": chunk_id})
    if as_json:
        print_json(lineage)
        return
    for part in ("chunk", "document", "source", "run"):
        table = Table(title=part, show_header=False, title_justify="left")
        for key, value in (lineage[part] or {}).items():
            table.add_row(key, escape(str(value)))  # a chunk's text or a uri is data, never Rich markup
        stdout.print(table)
    stdout.print(f"chunks table version: {lineage['table_version']}")


@app.command()
@reports_errors
def runs(
    config: ConfigOption = Path("kbflow.toml"),
    limit: Annotated[int, typer.Option(min=1, help="newest N runs")] = 20,
    wide: Annotated[bool, typer.Option("--wide", help="every count and the slowest stage (~110 columns)")] = False,
    as_json: JsonOption = False,
) -> None:
    """Run history: counts, durations per stage, data-quality outcome."""
    from kbflow.runs import promotion_line

    history = served.run("runs", config, {"limit": limit})
    if as_json:
        print_json(history)
        return
    stdout.print(runs_table(history, wide=wide))
    for run in history:  # a reindex's model switch: decided on the labeled queries' MRR@10
        if run.get("promotion"):
            stdout.print(f"{run['run_id']} {run['flow']} {promotion_line(run['promotion'])}", highlight=False,
                         soft_wrap=True)


def runs_table(history: list[dict[str, Any]], wide: bool = False) -> Table:
    """Decoded runs, newest first: fits 80 columns; `wide` adds chunk counts, stage and seconds detail."""
    table = Table(title="runs, newest first", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                  caption=DQ_LEGEND)
    table.add_column("run", no_wrap=True)  # a whole id, to paste into --run
    table.add_column("flow", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("DQ", no_wrap=True)
    table.add_column("docs +~-!" if not wide else "documents n/c/u/d/q", justify="right")
    table.add_column("chunks" if not wide else "chunks e/r/d/total", justify="right")
    table.add_column("s", justify="right")
    if wide:
        table.add_column("slowest stage")
    for run in history:
        d, c, stages = run["documents"] or {}, run["chunks"] or {}, run["stage_durations"] or {}
        if wide:
            documents = "/".join(str(d.get(k, 0)) for k in ("new", "changed", "unchanged", "deleted", "quarantined"))
            chunks = "/".join(str(c.get(k, 0)) for k in ("embedded", "reused", "deleted", "total"))
        else:  # what changed: +new ~changed -deleted !quarantined, and the index's chunk total
            documents = " ".join(f"{mark}{d.get(k, 0)}" for mark, k in
                                 (("+", "new"), ("~", "changed"), ("-", "deleted"), ("!", "quarantined")))
            chunks = str(c.get("total", 0))
        cells = [run["run_id"], run["flow"], run["status"], DQ_MARKS[run.get("dq_outcome")], documents, chunks,
                 f"{run['duration_s']:.0f}" if not wide else f"{run['duration_s']:.1f}"]
        if wide:
            slowest = max(stages.items(), key=lambda item: item[1], default=("", 0))
            cells.append(f"{slowest[0]} {slowest[1]:.1f}s" if slowest[0] else "")
        table.add_row(*cells)
    return table
