"""The deployment catalog: `kbflow serve` and deployments/prefect.yaml are the same list."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

from kbflow.config import load_config
from kbflow.flows.serve import CONFIG_FROM_ENV, deployment_catalog, kbflow_deployments, render_prefect_yaml

REPO = Path(__file__).parents[2]
PREFECT_YAML = REPO / "deployments" / "prefect.yaml"
EXAMPLE_CONFIG = REPO / "examples" / "kbflow.toml"
REGENERATE = "kbflow deployments --config examples/kbflow.toml --yaml > deployments/prefect.yaml"


def declared() -> dict[str, dict]:
    return {d["name"]: d for d in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]}


def test_prefect_yaml_is_the_rendered_catalog():
    assert PREFECT_YAML.read_text() == render_prefect_yaml(load_config(EXAMPLE_CONFIG)), (
        f"deployments/prefect.yaml and the catalog in flows/serve.py disagree; regenerate it: {REGENERATE}"
    )


def test_prefect_yaml_declares_what_serve_serves():
    config = load_config(EXAMPLE_CONFIG)
    served = {d.name: d for d in kbflow_deployments(CONFIG_FROM_ENV, config)}
    in_yaml = declared()

    assert list(in_yaml) == list(served)
    for name, deployment in served.items():
        entry = in_yaml[name]
        assert entry["parameters"] == deployment.parameters, name
        assert [s["cron"] for s in entry.get("schedules", [])] == [s.schedule.cron for s in deployment.schedules], name
        triggers = [
            {"expect": sorted(t.expect), "match": t.match.model_dump(), "parameters": t.parameters}
            for t in deployment.triggers
        ]
        assert [
            {"expect": sorted(t["expect"]), "match": t["match"], "parameters": t["parameters"]}
            for t in entry.get("triggers", [])
        ] == triggers, name
    catalog = deployment_catalog(config)
    assert {name: entry["entrypoint"] for name, entry in in_yaml.items()} == {d.name: d.entrypoint for d in catalog}


@pytest.mark.parametrize("entrypoint", sorted({d["entrypoint"] for d in declared().values()}))
def test_every_prefect_yaml_entrypoint_resolves_with_prefects_loader(entrypoint):
    flow = load_flow_from_entrypoint(entrypoint)  # what `prefect deploy --all` and a worker do

    catalog = deployment_catalog(load_config(EXAMPLE_CONFIG))
    assert flow.name in {d.flow.name for d in catalog if d.entrypoint == entrypoint}


def test_the_catalog_follows_the_config(tmp_path):
    config_path = tmp_path / "kbflow.toml"
    example = EXAMPLE_CONFIG.read_text()
    per_source_cron = example.replace('tenant = "public"', 'tenant = "public"\ningest_cron = "*/5 * * * *"', 1)
    config_path.write_text(per_source_cron.replace(
        "[evaluation]", '[schedule]\ndataset_kinds = ["sft"]\ndataset_cron = ""\n\n[evaluation]'))
    rendered = {d["name"]: d for d in yaml.safe_load(render_prefect_yaml(load_config(config_path)))["deployments"]}

    assert rendered["ingest-docs"]["parameters"] == {"config_path": CONFIG_FROM_ENV, "source": "docs"}
    assert rendered["ingest-docs"]["schedules"] == [{"cron": "*/5 * * * *"}]
    assert "schedules" not in rendered["build-dataset-sft"] and "build-dataset-embedding-pairs" not in rendered
