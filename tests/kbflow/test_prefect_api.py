"""Prefect defaults kbflow sets for its flow runs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HEARTBEAT = """
import kbflow.flows  # noqa: F401
from prefect.settings import get_current_settings
print(get_current_settings().flows.heartbeat_frequency)
"""


def heartbeat_in_a_fresh_process(**environment: str) -> str:
    env = {k: v for k, v in os.environ.items() if "HEARTBEAT" not in k and k != "PREFECT__FLOW_RUN_ID"}
    result = subprocess.run([sys.executable, "-c", HEARTBEAT], env=env | environment,
                            capture_output=True, text=True, timeout=120, check=True)
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, "None"),  # off: the heartbeat thread would add up to a second to every flow run's end
        ({"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "60"}, "60"),  # the user's choice is kept
        ({"PREFECT__FLOW_RUN_ID": "00000000-0000-0000-0000-000000000001"}, "180"),  # a deployment's run: Prefect's default
    ],
)
def test_flow_heartbeats_are_off_unless_configured_or_run_by_a_deployment(environment, expected):
    assert heartbeat_in_a_fresh_process(**environment) == expected
