# AWS Lambda handler: PREFECT_API_URL (and PREFECT_API_KEY for Prefect Cloud) in its environment,
# KBFLOW_SOURCE = the source's name in kbflow.toml
import json, os, urllib.request, uuid
from datetime import datetime, timezone

def handler(event, context):
    source = os.environ["KBFLOW_SOURCE"]
    changed = {"occurred": datetime.now(timezone.utc).isoformat(), "id": str(uuid.uuid4()),
               "event": "kbflow.source.changed",
               "resource": {"prefect.resource.id": f"kbflow.source.{source}", "prefect.resource.name": source}}
    headers = {"Content-Type": "application/json"}
    if os.environ.get("PREFECT_API_KEY"):
        headers["Authorization"] = f"Bearer {os.environ['PREFECT_API_KEY']}"
    request = urllib.request.Request(f"{os.environ['PREFECT_API_URL']}/events", data=json.dumps([changed]).encode(),
                                     headers=headers, method="POST")
    urllib.request.urlopen(request, timeout=10)
