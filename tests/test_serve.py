"""`kbflow serve` against a real `prefect server start` on loopback: an event runs an ingest."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from kbflow.config import load_config
from kbflow.flows.serve import kbflow_deployments
from kbflow.store import Store

from conftest import BIN, DOCS_SOURCE, wait_for, write_config

REPO = Path(__file__).parents[1]


def test_an_event_makes_the_served_deployment_ingest_that_source(small_corpus, prefect_server, tmp_path):
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    log = (tmp_path / "serve.log").open("w")
    served = subprocess.Popen([str(BIN / "kbflow"), "serve", "--config", str(small_corpus)], env=env, cwd=REPO,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def deployments() -> set[str]:
            found = httpx.post(f"{prefect_server}/deployments/filter", json={}, timeout=5).json()
            return {d["name"] for d in found}

        expected = {"ingest-all", "ingest-on-change", "reindex", "build-dataset-embedding-pairs"}
        assert wait_for(lambda: deployments() >= expected and deployments(), 120, "the served deployments")
        served_deployments = httpx.post(f"{prefect_server}/deployments/filter", json={}, timeout=5).json()
        ingest_all = next(d for d in served_deployments if d["name"] == "ingest-all")
        assert [s["schedule"]["cron"] for s in ingest_all["schedules"]] == ["0 * * * *"]  # [schedule] default
        nightly = next(d for d in served_deployments if d["name"] == "build-dataset-embedding-pairs")
        assert [s["schedule"]["cron"] for s in nightly["schedules"]] == ["30 2 * * *"]
        assert nightly["parameters"]["kind"] == "embedding-pairs"
        automations = httpx.post(f"{prefect_server}/automations/filter", json={}, timeout=5).json()
        assert any("kbflow.source.changed" in json.dumps(a["trigger"]) for a in automations)

        emit = ("from prefect.events import emit_event; from kbflow.flows.serve import SOURCE_CHANGED, source_resource; "
                "emit_event(event=SOURCE_CHANGED, resource=source_resource('docs'))")
        subprocess.run([sys.executable, "-c", emit], env=env, cwd=REPO, check=True, timeout=120)

        store = Store(load_config(small_corpus).store)
        run = wait_for(lambda: next((r for r in store.runs() if r["status"] == "published"), None), 300,
                       "the triggered ingest to publish")
        assert run["flow"] == "ingest" and run["source"] == "docs"
        flow_runs = httpx.post(f"{prefect_server}/flow_runs/filter", json={}, timeout=5).json()
        (triggered,) = [r for r in flow_runs if str(r["id"]) == run["prefect_flow_run_id"]]
        assert triggered["parameters"]["source"] == "docs" and triggered["deployment_id"]

        # kbflow watch, seeing the served trigger, announces edits instead of ingesting itself.
        watch_log = (tmp_path / "watch.log").open("w")
        watcher = subprocess.Popen([str(BIN / "kbflow"), "watch", "--config", str(small_corpus)], env=env,
                                   cwd=REPO, stdout=watch_log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(lambda: "announced" in (tmp_path / "watch.log").read_text(), 120, "the watcher's catch-up")
            (small_corpus.parent / "docs" / "announced.md").write_text("# Kiwi\n\nThe kiwi release notes.\n")
            wait_for(lambda: any(r["documents"] and '"new": 1' in r["documents"] for r in store.runs()), 300,
                     "the announced change to be ingested by the served deployment")
        finally:
            os.killpg(watcher.pid, signal.SIGTERM)
            watcher.wait(60)
        assert "ingesting here" not in (tmp_path / "watch.log").read_text()
    finally:
        os.killpg(served.pid, signal.SIGTERM)
        served.wait(60)


def test_served_deployments_follow_the_schedule_config(tmp_path):
    config_path = write_config(tmp_path, DOCS_SOURCE + 'ingest_cron = "*/5 * * * *"\n', extra=textwrap.dedent("""
        [schedule]
        ingest_cron = "*/15 * * * *"
        dataset_cron = "0 1 * * *"
        dataset_kinds = ["embedding-pairs", "sft"]
        evaluate_cron = "0 5 * * 0"
        [evaluation]
        queries = "qa.jsonl"
    """))
    served = {d.name: d for d in kbflow_deployments(str(config_path), load_config(config_path))}

    assert set(served) == {"ingest-all", "ingest-docs", "ingest-on-change", "reindex",
                           "build-dataset-embedding-pairs", "build-dataset-sft", "evaluate-weekly"}
    crons = {name: [s.schedule.cron for s in d.schedules] for name, d in served.items()}
    assert crons["ingest-all"] == ["*/15 * * * *"] and crons["reindex"] == []
    assert crons["ingest-docs"] == ["*/5 * * * *"] and served["ingest-docs"].parameters["source"] == "docs"
    assert crons["build-dataset-sft"] == ["0 1 * * *"] and crons["evaluate-weekly"] == ["0 5 * * 0"]
    assert served["build-dataset-sft"].parameters == {"config_path": str(config_path), "kind": "sft"}
    assert served["evaluate-weekly"].parameters["mode"] == "all"

    (tmp_path / "plain").mkdir()
    on_demand = write_config(tmp_path / "plain", DOCS_SOURCE, extra='[schedule]\ndataset_cron = ""\n')
    served = {d.name: d for d in kbflow_deployments(str(on_demand), load_config(on_demand))}
    assert "evaluate-weekly" not in served  # no [evaluation] queries
    assert "ingest-docs" not in served  # no per-source cron
    assert served["build-dataset-embedding-pairs"].schedules == []
