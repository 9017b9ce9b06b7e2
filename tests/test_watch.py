"""`kbflow watch` end to end: an edit becomes searchable without a manual ingest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kbflow.config import load_config, source_config
from kbflow.flows.watch import PendingSources, source_fingerprint
from kbflow.search import search

from conftest import write_config

BIN = Path(sys.executable).parent


def test_pending_sources_settle_after_a_quiet_period():
    pending = PendingSources()
    pending.mark("docs")
    assert pending.settled(0.3) == []
    time.sleep(0.15)
    pending.mark("docs")  # a burst: the clock restarts
    time.sleep(0.2)
    assert pending.settled(0.3) == []
    time.sleep(0.15)
    assert pending.settled(0.3) == ["docs"] and pending.settled(0) == []


def test_records_polling_sees_an_edit_whether_path_is_a_folder_a_file_or_a_glob(tmp_path):
    faq, other = tmp_path / "records/faq.jsonl", tmp_path / "records/other.csv"
    faq.parent.mkdir()
    faq.write_text('{"id": "a", "answer": "one"}\n')
    other.write_text("id,answer\n1,x\n")
    sources = [source_config(name="faq", kind="records", path=path, id_field="id", text_field="answer")
               for path in (faq.parent, faq, tmp_path / "records/*.jsonl")]
    before = [source_fingerprint(source) for source in sources]
    assert all(before)  # each sees faq.jsonl
    faq.write_text('{"id": "a", "answer": "one, edited"}\n')
    assert all(source_fingerprint(s) != b for s, b in zip(sources, before))
    edited = [source_fingerprint(source) for source in sources]
    other.write_text("id,answer\n1,y\n")  # only the folder source holds the CSV
    assert [source_fingerprint(s) != e for s, e in zip(sources, edited)] == [True, False, False]


def test_an_edit_is_searchable_without_a_manual_ingest(small_corpus, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    with small_corpus.open("a") as handle:
        handle.write("\n[schedule]\nwatch_debounce_s = 1.0\n")
    out = (tmp_path / "watch.out").open("w")
    watcher = subprocess.Popen([str(BIN / "kbflow"), "watch", "--config", str(small_corpus), "--json"], env=env,
                               stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def runs() -> list[dict]:
        lines = (tmp_path / "watch.out").read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    try:
        deadline = time.monotonic() + 240
        while not runs() and time.monotonic() < deadline and watcher.poll() is None:
            time.sleep(0.5)
        assert runs() and runs()[0]["status"] == "published", (tmp_path / "watch.out").read_text()[-3000:]

        saved = time.monotonic()
        (small_corpus.parent / "docs" / "new-feature.md").write_text(
            "# Offline mode\n\nLumen Notes keeps working offline and syncs the zebra notebook later.\n")
        config = load_config(small_corpus)
        while time.monotonic() - saved < 120:
            hits = search(config, ["zebra notebook offline"], k=1, mode="fts")[0]
            if hits and hits[0]["uri"] == "new-feature.md":
                break
            time.sleep(0.5)
        latency = time.monotonic() - saved
        assert hits and hits[0]["uri"] == "new-feature.md", (tmp_path / "watch.out").read_text()[-3000:]
        print(f"edit searchable {latency:.1f} s after the save")
        deadline = time.monotonic() + 60
        while len(runs()) < 2 and time.monotonic() < deadline:  # the report follows the publish
            time.sleep(0.5)
        assert runs()[-1]["source"] == "docs" and runs()[-1]["documents"]["new"] == 1
    finally:
        os.killpg(watcher.pid, signal.SIGTERM)
        watcher.wait(60)


def test_a_change_during_a_run_is_coalesced_into_the_next_run(small_corpus):
    """watch() itself, with a stand-in for the ingest: an edit made mid-run is not lost."""
    import threading

    from kbflow.flows.watch import watch

    with small_corpus.open("a") as handle:
        handle.write("\n[schedule]\nwatch_debounce_s = 0.3\n")
    config = load_config(small_corpus)
    docs, calls, stop = small_corpus.parent / "docs", [], threading.Event()

    def run_source(name):
        calls.append(name)
        if len(calls) == 2:  # the first run after an edit: edit again while it "runs"
            (docs / "during-run.md").write_text("# Late\n\nWritten while the previous run was going.")
            time.sleep(1.0)
        if len(calls) == 3:
            stop.set()

    worker = threading.Thread(target=watch, args=(config, run_source), kwargs={"stop": stop})
    worker.start()
    time.sleep(1.0)
    (docs / "first-edit.md").write_text("# Edit\n\nA first edit.")
    worker.join(30)
    assert not worker.is_alive()
    assert calls == [None, "docs", "docs"]  # catch-up, the edit, then the edit made during that run


@pytest.mark.usefixtures("prefect_harness")
def test_a_changed_row_of_a_sql_source_triggers_an_ingest(tmp_path, hash_embedder):
    """Polling a sql source (max(cursor), count(*)) every records_poll_s: an edited row runs ingest."""
    import sqlite3
    import threading

    from kbflow.flows.watch import react_to_change, watch

    database = tmp_path / "tickets.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE tickets (id INTEGER PRIMARY KEY, body TEXT, updated_at TEXT)")
        db.executemany("INSERT INTO tickets VALUES (?, ?, ?)", [(1, "Refunds take five days.", "2026-11-01"),
                                                                (2, "Exports are CSV files.", "2026-11-02")])
    config_path = write_config(tmp_path, f"""
        [[sources]]
        name = "tickets"
        kind = "sql"
        url = "sqlite:///{database}"
        table = "tickets"
        id_field = "id"
        text_field = "body"
        cursor_field = "updated_at"
        """, "[schedule]\nrecords_poll_s = 0.2\nwatch_debounce_s = 0.2\n")
    config, reports, stop = load_config(config_path), [], threading.Event()
    ingest_here = react_to_change(str(config_path), config)

    def run_source(name):
        reports.append((name, ingest_here(name)))
        if len(reports) == 1:  # the catch-up run is done: edit a row
            with sqlite3.connect(database) as db:
                db.execute("UPDATE tickets SET body = 'Refunds take three days.', updated_at = '2026-11-30' WHERE id = 1")
        else:
            stop.set()

    worker = threading.Thread(target=watch, args=(config, run_source), kwargs={"stop": stop})
    worker.start()
    worker.join(120)
    assert not worker.is_alive()
    (_, caught_up), (name, changed) = reports
    assert caught_up["documents"]["new"] == 2 and name == "tickets"
    assert changed["status"] == "published" and changed["documents"]["changed"] == 1
    assert search(config, ["refunds three days"], k=1, mode="fts")[0][0]["uri"] == "tickets#1"
