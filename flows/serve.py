"""What `kbflow serve` runs: kbflow's deployments, with their schedules and event triggers.

- `ingest-all`: every source, on `[schedule] ingest_cron`;
- `ingest-<source>`: one source, on its own `ingest_cron` (for sources that set one);
- `ingest-on-change`: one source, whenever a `kbflow.source.changed` event names it
  (`kbflow watch` emits those; so can any system that talks to the Prefect API);
- `reindex`: on demand (`prefect deployment run reindex/reindex`);
- `build-dataset-<kind>`: each of `[schedule] dataset_kinds`, on `dataset_cron` (nightly);
- `evaluate-weekly`: `kbflow eval` of every search mode on `[evaluation] queries`, on
  `evaluate_cron` (only when queries are configured).

All run from one process with Prefect's own `serve`; the store's writer lock
keeps two of them from writing at once. deployments/prefect.yaml declares the
same deployments for a Prefect server with workers.
"""

from __future__ import annotations

from prefect import serve
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

from kbflow.config import KbflowConfig
from kbflow.flows.build_dataset import build_dataset
from kbflow.flows.evaluate import evaluate
from kbflow.flows.ingest import ingest
from kbflow.flows.reindex import reindex

SOURCE_CHANGED = "kbflow.source.changed"


def source_resource(source: str) -> dict[str, str]:
    """The resource a `kbflow.source.changed` event is about: the source, by name."""
    return {"prefect.resource.id": f"kbflow.source.{source}", "prefect.resource.name": source}


def kbflow_deployments(config_path: str, config: KbflowConfig) -> list:
    on_change = DeploymentEventTrigger(
        expect={SOURCE_CHANGED},
        match={"prefect.resource.id": "kbflow.source.*"},
        parameters={"config_path": config_path, "source": "{{ event.resource.name }}"},
    )
    return [
        ingest.to_deployment(
            name="ingest-all",
            parameters={"config_path": config_path},
            cron=config.schedule.ingest_cron,
            description="Bring the index up to date with every source.",
        ),
        *(
            ingest.to_deployment(
                name=f"ingest-{source.name}",
                parameters={"config_path": config_path, "source": source.name},
                cron=source.ingest_cron,
                description=f"Bring the index up to date with the {source.name} source.",
            )
            for source in config.select_sources(None)
            if source.ingest_cron
        ),
        ingest.to_deployment(
            name="ingest-on-change",
            parameters={"config_path": config_path},
            triggers=[on_change],
            description=f"Ingest the source a {SOURCE_CHANGED} event names.",
        ),
        reindex.to_deployment(name="reindex", parameters={"config_path": config_path}),
        *(
            build_dataset.to_deployment(
                name=f"build-dataset-{kind}",
                parameters={"config_path": config_path, "kind": kind},
                cron=config.schedule.dataset_cron,
                description=f"Rebuild the {kind} fine-tuning dataset from the current index.",
            )
            for kind in config.schedule.dataset_kinds
        ),
        *(
            [
                evaluate.to_deployment(
                    name="evaluate-weekly",
                    parameters={"config_path": config_path, "mode": "all"},
                    cron=config.schedule.evaluate_cron,
                    description="Score retrieval of every search mode on [evaluation] queries.",
                )
            ]
            if config.evaluation.queries
            else []
        ),
    ]


def serve_kbflow(config_path: str, config: KbflowConfig) -> None:
    """Serve kbflow's deployments from this process until interrupted."""
    serve(*kbflow_deployments(config_path, config), print_starting_message=False)
