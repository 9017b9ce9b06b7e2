"""Prefect flows: thin orchestration of tasks, one file per flow."""

import logging

from kbflow.prefect_api import without_flow_heartbeats

without_flow_heartbeats()
# Prefect drains its event queue when the process exits and logs "Still processing items: N items
# remaining" at WARNING whenever events are still pending then: the normal case right after a short
# run, not something a user can act on. The service's errors still show.
logging.getLogger("EventsWorker").setLevel(logging.ERROR)
