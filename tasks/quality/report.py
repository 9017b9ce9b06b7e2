"""What a run's data-quality results look like where people read them: the Prefect artifacts.

`kbflow-quality` (markdown: every suite's verdict, blocked checks in numbers, the run's
quarantine) and `kbflow-expectations` (a table of every expectation result), attached to
the flow run so the Prefect UI shows what was checked and what was set aside, and why.
"""

from __future__ import annotations

import json
from typing import Any


def publish_artifacts(summary: dict[str, Any]) -> None:
    """A markdown summary and a table of expectation results, shown next to the run in Prefect."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return
    quarantine = summary.get("quarantine") or {"count": 0, "rows": []}
    if not summary["suites"] and not quarantine["count"]:
        return
    create_markdown_artifact(quality_markdown(summary), key="kbflow-quality", description="kbflow data-quality summary")
    rows = [
        {"suite": suite["name"], **{k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in e.items()}}
        for suite in summary["suites"]
        for e in suite["expectations"]
    ]
    if rows:
        create_table_artifact(rows, key="kbflow-expectations", description="kbflow expectation results")


def _verdict(success: bool) -> str:
    return "✅ pass" if success else "❌ fail"


def quality_markdown(summary: dict[str, Any]) -> str:
    """The `kbflow-quality` artifact: suites, blocked checks in numbers, and the run's quarantine."""
    quarantine = summary.get("quarantine") or {"count": 0, "rows": []}
    failed = [(s["name"], e) for s in summary["suites"] for e in s["expectations"] if not e["success"]]
    lines = [
        f"# Data quality of run `{summary['run_id']}`: {'passed' if summary['success'] else 'failures'}",
        "",
        "| suite | result | expectations | failed |",
        "|---|---|---|---|",
        *(
            f"| {s['name']} | {_verdict(s['success'])} | {len(s['expectations'])} "
            f"| {sum(not e['success'] for e in s['expectations'])} |"
            for s in summary["suites"]
        ),
        "",
    ]
    blocked = [(name, e) for name, e in failed if e["on_failure"] == "block"]
    if blocked:
        lines += ["## Blocked", "", *(f"- ❌ `{name}.{e['type']}({e['column']})`: {e.get('message')}"
                                     for name, e in blocked), ""]
    quarantining = [(name, e) for name, e in failed if e["on_failure"] == "quarantine"]
    if quarantining:
        lines += ["## Failed checks (rows quarantined)", "",
                  *(f"- ❌ `{name}.{e['type']}({e['column']})`: {e['unexpected_count']} rows"
                    for name, e in quarantining), ""]
    lines += [f"## Quarantine: {quarantine['count']} set aside", ""]
    if quarantine["rows"]:
        lines += ["| source | uri | stage | reason |", "|---|---|---|---|",
                  *(f"| {r['source']} | {r['uri']} | {r['stage']} | {_cell(r['reason'])} |" for r in quarantine["rows"])]
        more = quarantine["count"] - len(quarantine["rows"])
        lines += [f"\n… and {more} more: `kbflow quarantine --run {summary['run_id']}`" if more > 0 else ""]
    if summary.get("data_docs"):
        lines += ["", f"Data Docs: `{summary['data_docs']}`"]
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")
