"""Prefect flows: thin orchestration of tasks, one file per flow."""
