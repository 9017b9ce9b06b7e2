"""kbflow's deployments, in one catalog: `kbflow serve` serves it, deployments/prefect.yaml is rendered from it.

- `ingest-all`: every source, on `[schedule] ingest_cron`;
- `ingest-<source>`: one source, on its own `ingest_cron` (for sources that set one);
- `ingest-on-change`: one source, whenever a `kbflow.source.changed` event names it
  (`kbflow watch` emits those; so can any system that talks to the Prefect API);
- `reindex`: on demand (`prefect deployment run reindex/reindex`);
- `build-dataset-<kind>`: each of `[schedule] dataset_kinds`, on `dataset_cron` (nightly);
- `evaluate-weekly`: `kbflow evaluate` of every search mode on `[evaluation] queries`, on
  `evaluate_cron` (only when queries are configured).

`kbflow serve` runs them all from one process with Prefect's own `serve`; the store's
writer lock keeps two of them from writing at once. For a Prefect server with workers,
`kbflow deployments --config C --yaml` renders the same catalog as a prefect.yaml
(deployments/prefect.yaml is that rendering of examples/kbflow.toml; a test keeps it so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from prefect import Flow, serve
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

from kbflow.config import KbflowConfig
from kbflow.flows.build_dataset import build_dataset
from kbflow.flows.evaluate import evaluate
from kbflow.flows.ingest import ingest
from kbflow.flows.reindex import reindex

SOURCE_CHANGED = "kbflow.source.changed"
WORK_POOL = "kbflow"
# What prefect.yaml passes as config_path: resolved by `prefect deploy` from the environment.
CONFIG_FROM_ENV = "{{ $KBFLOW_CONFIG }}"
PREFECT_YAML_HEADER = """\
# kbflow's deployments for a Prefect server with a work pool: the same ones `kbflow serve`
# serves from one process. GENERATED from the catalog in flows/serve.py, do not edit by hand:
#   kbflow deployments --config examples/kbflow.toml --yaml > deployments/prefect.yaml
# (tests/flows/test_serve.py fails when this file and the catalog disagree).
# Render your own from your kbflow.toml the same way. From the repository root:
#   export PREFECT_API_URL=http://127.0.0.1:4200/api    # after `prefect server start`
#   prefect work-pool create kbflow --type process
#   KBFLOW_HOME=$PWD KBFLOW_CONFIG=$PWD/kbflow.toml prefect deploy --prefect-file deployments/prefect.yaml --all
#   prefect worker start --pool kbflow
# Per-environment settings (schedules, sources, [runner]) live in kbflow.toml, never inside flows.
"""


@dataclass(frozen=True)
class KbflowDeployment:
    """One deployment of the catalog: which flow, with what parameters, when it runs."""

    name: str
    flow: Flow
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)  # besides config_path
    cron: str | None = None  # None or "": on demand
    on_change: bool = False  # run by a kbflow.source.changed event, for the source it names

    @property
    def entrypoint(self) -> str:
        """The flow by module path, as `prefect deploy` and load_flow_from_entrypoint take it."""
        return f"{self.flow.fn.__module__}:{self.flow.fn.__name__}"


def source_resource(source: str) -> dict[str, str]:
    """The resource a `kbflow.source.changed` event is about: the source, by name."""
    return {"prefect.resource.id": f"kbflow.source.{source}", "prefect.resource.name": source}


def deployment_catalog(config: KbflowConfig) -> list[KbflowDeployment]:
    """Every kbflow deployment the config asks for: the one list serve and prefect.yaml come from."""
    schedule = config.schedule
    return [
        KbflowDeployment("ingest-all", ingest, "Bring the index up to date with every source.",
                         cron=schedule.ingest_cron),
        *(
            KbflowDeployment(f"ingest-{source.name}", ingest,
                             f"Bring the index up to date with the {source.name} source.",
                             parameters={"source": source.name}, cron=source.ingest_cron)
            for source in config.select_sources(None)
            if source.ingest_cron
        ),
        KbflowDeployment("ingest-on-change", ingest, f"Ingest the source a {SOURCE_CHANGED} event names.",
                         on_change=True),
        KbflowDeployment("reindex", reindex, "Re-embed everything with the configured model; switch if it passes DQ."),
        *(
            KbflowDeployment(f"build-dataset-{kind}", build_dataset,
                             f"Rebuild the {kind} fine-tuning dataset from the current index.",
                             parameters={"kind": kind}, cron=schedule.dataset_cron)
            for kind in schedule.dataset_kinds
        ),
        *(
            [KbflowDeployment("evaluate-weekly", evaluate,
                              "Score retrieval of every search mode on [evaluation] queries.",
                              parameters={"mode": "all"}, cron=schedule.evaluate_cron)]
            if config.evaluation.queries
            else []
        ),
    ]


def _change_trigger(config_path: str) -> dict[str, Any]:
    """The event trigger of `on_change` deployments, as keyword arguments of DeploymentEventTrigger."""
    return {
        "expect": [SOURCE_CHANGED],
        "match": {"prefect.resource.id": "kbflow.source.*"},
        "parameters": {"config_path": config_path, "source": "{{ event.resource.name }}"},
    }


def kbflow_deployments(config_path: str, config: KbflowConfig) -> list:
    """The catalog as Prefect runner deployments, for `serve`."""
    return [
        d.flow.to_deployment(
            name=d.name,
            parameters={"config_path": config_path, **d.parameters},
            cron=d.cron or None,
            triggers=[DeploymentEventTrigger(**_change_trigger(config_path))] if d.on_change else None,
            description=d.description,
        )
        for d in deployment_catalog(config)
    ]


def prefect_yaml_deployments(config: KbflowConfig) -> list[dict[str, Any]]:
    """The catalog as prefect.yaml `deployments:` entries; config_path comes from $KBFLOW_CONFIG."""
    entries = []
    for d in deployment_catalog(config):
        entry: dict[str, Any] = {
            "name": d.name,
            "description": d.description,
            "entrypoint": d.entrypoint,
            "work_pool": {"name": WORK_POOL},
            "parameters": {"config_path": CONFIG_FROM_ENV, **d.parameters},
        }
        if d.cron:
            entry["schedules"] = [{"cron": d.cron}]
        if d.on_change:
            entry["triggers"] = [{"type": "event", "enabled": True, **_change_trigger(CONFIG_FROM_ENV)}]
        entries.append(entry)
    return entries


def render_prefect_yaml(config: KbflowConfig) -> str:
    """A prefect.yaml for `prefect deploy --all` with the catalog's deployments for this config."""
    from prefect import __version__ as prefect_version

    document = {
        "name": "kbflow",
        "prefect-version": prefect_version,
        # The checkout (or any folder) a worker runs from; kbflow itself is an installed package.
        "pull": [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $KBFLOW_HOME }}"}}],
        "deployments": prefect_yaml_deployments(config),
    }
    return PREFECT_YAML_HEADER + yaml.safe_dump(document, sort_keys=False, width=120, default_flow_style=False)


def serve_kbflow(config_path: str, config: KbflowConfig) -> None:
    """Serve kbflow's deployments from this process until interrupted."""
    serve(*kbflow_deployments(config_path, config), print_starting_message=False)
