# kbflow_listen.py: PREFECT_API_URL=… KB_DB_URL=postgresql+psycopg://… python kbflow_listen.py
import os
import psycopg
from prefect.events import emit_event

url = os.environ["KB_DB_URL"].replace("postgresql+psycopg://", "postgresql://")  # libpq's spelling
with psycopg.connect(url, autocommit=True) as connection:
    connection.execute("LISTEN kbflow_source_changed")
    for notice in connection.notifies():  # blocks; one notification per changing statement
        emit_event(event="kbflow.source.changed",
                   resource={"prefect.resource.id": f"kbflow.source.{notice.payload}",
                             "prefect.resource.name": notice.payload})
