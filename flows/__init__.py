"""Prefect flows: thin orchestration of tasks, one file per flow."""

from kbflow.prefect_api import without_flow_heartbeats

without_flow_heartbeats()
