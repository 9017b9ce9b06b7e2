"""`kbflow evaluate` (retrieval metrics of the index; `eval` is its alias) and `kbflow finetune` (tune the model)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from kbflow.cli.common import (
    EXIT_USAGE,
    ConfigOption,
    JsonOption,
    PrincipalOption,
    app,
    fail,
    print_json,
    progress_bars,
    reports_errors,
    stderr,
    stdout,
)
from kbflow.cli import served
from kbflow.cli.server import flow_api
from kbflow.config import EvalMode, load_config


@app.command("evaluate")
@reports_errors
def evaluate(
    config: ConfigOption = Path("kbflow.toml"),
    queries: Annotated[Path | None, typer.Option(
        help="JSONL of {\"query\" (or \"question\"), \"relevant\": [ids]}; default: [evaluation] queries")] = None,
    k: Annotated[int | None, typer.Option("--k", min=1, max=1000, help="recall@k cut-off; default: [evaluation] k")] = None,
    mode: Annotated[EvalMode, typer.Option(help="vector | fts | hybrid | all")] = "all",
    dataset: Annotated[Path | None, typer.Option(help="evaluate on the test split of DIR/embedding-pairs")] = None,
    tune: Annotated[bool, typer.Option("--tune", help="grid-search hybrid fusion and weight; print [search] lines")] = False,
    generated: Annotated[bool, typer.Option(
        "--generated", help="questions made from the index's headings (no labels needed; --tune uses them without labels)")] = False,
    principal: PrincipalOption = None,
    as_json: JsonOption = False,
) -> None:
    """Retrieval metrics (hit@k, recall, MRR, nDCG) per mode and source for labeled queries."""
    if (queries is not None) + (dataset is not None) + generated > 1:
        raise fail("give one of --queries, --dataset or --generated", EXIT_USAGE)
    arguments = {"queries": served.as_path(queries), "dataset": served.as_path(dataset), "k": k, "mode": mode,
                 "tune": tune, "generated": generated, "principals": principal}
    report = served.run("evaluate", config, arguments, as_json=as_json, flows=True)
    if report.get("unresolved"):
        stderr.print(f"note: {report['unresolved']} relevant id(s) match no indexed document or chunk "
                     f"(listed in {report['results']})")
    if tune:
        best = report["tuned"]
        stderr.print(f"best hybrid fusion on these queries; to use it, put in {config}:\n{best['config']}",
                     highlight=False, markup=False)
    if as_json:
        print_json(report)
    else:
        _print_eval(report)


# The command's first name, kept working: same options, same output.
app.command("eval", hidden=True, help="alias of `kbflow evaluate`")(evaluate)


def _print_eval(report: dict[str, Any]) -> None:
    from kbflow.relevance import METRIC_NAMES

    names = [name.format(k=report["k"]) for name in METRIC_NAMES]
    table = Table(title=f"evaluate {report['run_id']} ({report['label']})")
    table.add_column("mode")
    table.add_column("source")
    for name in names:
        table.add_column(name, justify="right")
    rows = [(mode, "all", scores) for mode, scores in report["modes"].items()]
    if report.get("tuned"):
        tuned = report["tuned"]
        rows.append((f"tuned: {tuned['fusion']} {tuned['weight']:g}", "all", tuned["metrics"]))
    for mode, scores in report["modes"].items():
        per_source = scores.get("per_source", {})
        if len(per_source) > 1:
            rows += [(mode, source, metrics) for source, metrics in per_source.items()]
    for mode, source, scores in rows:
        table.add_row(mode, source, *(f"{scores[n]:.3f}" if n != "n" else str(scores[n]) for n in names))
    stdout.print(table)
    stdout.print(f"results: {report['results']}\nchart: {report['chart']}", highlight=False)


@app.command()
@reports_errors
def finetune(
    config: ConfigOption = Path("kbflow.toml"),
    dataset: Annotated[Path, typer.Option(help="an embedding-pairs dataset folder (DIR/embedding-pairs)")] = ...,
    out: Annotated[Path, typer.Option(help="a new folder for the tuned model")] = ...,
    epochs: Annotated[int | None, typer.Option(min=1, help="default: finetune.epochs of the config")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", min=1, help="stop after N steps (default: finetune.max_steps)")] = None,
    tsdae_steps: Annotated[int | None, typer.Option(
        "--tsdae-steps", min=0, help="TSDAE steps on the index's texts first (default: finetune.tsdae_steps)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Fine-tune the embedding model on built pairs; report base vs tuned retrieval on the test split."""
    loaded = load_config(config)
    from kbflow.tasks.evaluation.finetune import REPORTED_METRICS, check_out_dir, read_pairs, retrieval_set

    check_out_dir(out.resolve())
    retrieval_set(read_pairs(dataset))  # a missing or wrong dataset fails here, before Prefect and torch
    api = flow_api(loaded, quiet=as_json)
    from kbflow.flows.finetune import finetune as finetune_flow

    with progress_bars(enabled=not as_json):
        api.ready()
        report = finetune_flow(config_path=str(config.resolve()), dataset=str(dataset.resolve()),
                               out=str(out.resolve()), epochs=epochs, max_steps=max_steps, tsdae_steps=tsdae_steps)
    if as_json:
        print_json(report)
        return
    table = Table(title=f"finetune: {report['steps']} steps on {report['train_rows']} pairs, {report['minutes']:.1f} min")
    table.add_column("model")
    for name in REPORTED_METRICS:
        table.add_column(name, justify="right")
    for label in ("base", "tuned"):
        table.add_row(label, *(f"{report[label][name]:.3f}" for name in REPORTED_METRICS))
    for label in ("base", "tuned") if report.get("labeled") else ():  # the real questions among them, apart
        table.add_row(f"{label}, labeled", *(f"{report['labeled'][label][name]:.3f}" for name in REPORTED_METRICS))
    stdout.print(table)
    labeled = f", {report['labeled']['base']['n']} of them labeled" if report.get("labeled") else \
        " (generated questions: no labeled ones in it)"
    stdout.print(f"test split: {report['base']['n']} queries{labeled}. tuned model: {report['model_dir']}\n"
                 f"to use it: set [embedding] model = \"{report['model_dir']}\" in {config}, "
                 f"then `kbflow reindex --config {config}`", highlight=False)
