"""`kbflow dataset build | check`: fine-tuning datasets in Parquet, and their staleness.

Commands that act on one kind of thing are grouped under its noun (`dataset build`, `dataset check`);
`kbflow build-dataset` (the name of the flow and its deployments) is an alias of `dataset build`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from kbflow.cli.common import (
    EXIT_BLOCKED,
    EXIT_STALE,
    ConfigOption,
    JsonOption,
    PrincipalOption,
    app,
    fail,
    print_json,
    reports_errors,
    stderr,
    stdout,
)
from kbflow.cli import served
from kbflow.client import CommandBlocked
from kbflow.config import DatasetKind, load_config

dataset_app = typer.Typer(help="Fine-tuning datasets in Parquet: build them, check them for stale rows.",
                          no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("build")
@reports_errors
def dataset_build(
    kind: Annotated[DatasetKind, typer.Option("--kind", help="embedding-pairs | reranker | sft | raft")],
    config: ConfigOption = Path("kbflow.toml"),
    source: Annotated[str | None, typer.Option(help="only this source (a labeled one for sft/raft)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="parent folder (default datasets.out_dir)")] = None,
    principal: PrincipalOption = None,
    as_json: JsonOption = False,
) -> None:
    """Build a dataset into OUT/KIND: data/{train,validation,test}-*.parquet, README.md, manifest.json."""
    if source is not None:
        load_config(config).source(source)  # fail fast, before Prefect or a service starts
    arguments = {"kind": kind, "source": source, "out": served.as_path(out), "principals": principal}
    try:
        report = served.run("dataset-build", config, arguments, as_json=as_json, flows=True)
    except CommandBlocked as blocked:
        if as_json:
            print_json({"kind": kind, "status": "blocked", "failures": blocked.failures})
        raise fail(f"{blocked}; no dataset was written", EXIT_BLOCKED) from None
    if as_json:
        print_json(report)
        return
    stdout.print(f"dataset {report['kind']}: {report['dir']}", highlight=False, soft_wrap=True)
    table = Table()
    for column in ("split", "rows"):
        table.add_column(column)
    for split, rows in report["rows"].items():
        table.add_row(split, str(rows))
    stdout.print(table)
    dropped = ", ".join(f"{step} {n}" for step, n in report["dropped"].items() if n) or "none"
    pii = ", ".join(f"{kind} {n}" for kind, n in report["pii"].items()) or "none"
    failed = [e["check"] or e["type"] for e in report["checks"]["expectations"] if not e["success"]]
    stdout.print(f"dropped: {dropped}\nPII found: {pii}\nchecks: {'all passed' if not failed else ', '.join(failed)}")
    for name, stats in report.get("generation", {}).items():  # a model-backed generator's speed and yield
        speed = f", {stats['seconds_per_question']} s a question" if stats.get("seconds_per_question") else ""
        stdout.print(f"{name}: {stats['accepted']} of {stats['passages']} passages kept a question "
                     f"({stats['generated']} generated, {stats['cached']} cached{speed})", highlight=False)


# The flow's name as a command: same options, same output.
app.command("build-dataset", hidden=True, help="alias of `kbflow dataset build`")(dataset_build)


@dataset_app.command("check")
@reports_errors
def dataset_check(
    path: Annotated[Path, typer.Argument(help="a built dataset folder, DIR/KIND")],
    config: ConfigOption = Path("kbflow.toml"),
    as_json: JsonOption = False,
) -> None:
    """Report rows whose source chunk or document was deleted or changed since the build (exit 4 if any)."""
    from kbflow.store import Store
    from kbflow.tasks.datasets.staleness import find_stale_rows

    settings = load_config(config)
    report = find_stale_rows(path, settings, Store(settings.store))
    if as_json:
        print_json(report)
    else:
        stdout.print(f"{path}: {report['stale']} of {report['rows']} rows stale "
                     f"({report['deleted']} deleted, {report['changed']} changed"
                     + (f", {report['not_visible']} no longer visible)" if report["not_visible"] else ")"))
        for example in report["examples"]:
            stdout.print(f"  {example['split']} {example['id']}: {example['reason']} (doc {example['doc_id']})")
    if report["stale"]:
        if not as_json:
            stderr.print("rebuild it with `kbflow dataset build` to bring it up to date with the index")
        raise typer.Exit(EXIT_STALE)
