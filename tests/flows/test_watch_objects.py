"""`kbflow watch` on an object-storage source: its listing (keys and ETags) is polled, and a changed
object starts a run of that source; an unchanged bucket starts none."""

from __future__ import annotations

import threading
import time
import uuid

from kbflow.config import load_config, source_config
from kbflow.flows.watch import source_fingerprint, watch

from conftest import write_config
from s3_servers import s3_client

BUCKET = "kbflow-test"


def wait_for(condition, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_changed_object_starts_a_run_of_its_source(tmp_path, s3_proxy):
    prefix = f"watch-{uuid.uuid4().hex[:8]}"
    client = s3_client(s3_proxy.endpoint)
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/a.md", Body=b"# A\n\nfirst")
    source = (f'[[sources]]\nname = "kb"\nkind = "files"\npath = "s3://{BUCKET}/{prefix}"\n'
              f'[sources.storage_options]\nendpoint_url = "{s3_proxy.endpoint}"\nkey = "test"\nsecret = "test"\n')
    config = load_config(write_config(tmp_path, source, "[schedule]\nrecords_poll_s = 0.2\nwatch_debounce_s = 0.1\n"))
    runs: list[str | None] = []
    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(config, runs.append), kwargs={"stop": stop}, daemon=True)
    watcher.start()
    try:
        assert wait_for(lambda: runs == [None])  # the catch-up run

        def listings() -> int:
            return sum(1 for method, _, query in s3_proxy.requests if method == "GET" and "list-type" in query)

        assert wait_for(lambda: listings() >= 4)  # the first fingerprint, then polls of an unchanged bucket
        assert runs == [None]
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/a.md", Body=b"# A\n\nsecond")
        assert wait_for(lambda: runs == [None, "kb"])
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/b.md", Body=b"# B\n\nnew")
        assert wait_for(lambda: runs == [None, "kb", "kb"])
    finally:
        stop.set()
        watcher.join(10)


def test_a_failed_listing_keeps_the_last_fingerprint_and_logs_no_secret(caplog):
    source = source_config(name="kb", kind="files", path="s3://bucket/kb",
                          storage_options={"endpoint_url": "http://127.0.0.1:9", "secret": "poll-secret-31"})
    last = (("a.md", "etag:1"),)
    assert source_fingerprint(source, last) == last
    assert "cannot list s3://bucket/kb" in caplog.text and "poll-secret-31" not in caplog.text
