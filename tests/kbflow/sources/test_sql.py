"""SQL sources on SQLite (a real database file, fast): reading in batches, the cursor, bad rows, errors.

The same code against a real PostgreSQL, through real ingest flow runs: tests/flows/test_ingest_sql.py.
"""

from __future__ import annotations

import sqlite3
import sys

import pyarrow as pa
import pytest
import sqlalchemy as sa

from kbflow.config import ConfigError, source_config
from kbflow.sources.base import Source
from kbflow.errors import SourceUnreachable
from kbflow.schemas import DOCUMENTS
from kbflow.store import Store
from kbflow.sources.base import make_doc_id
from kbflow.tasks.sources.discover import diff_against_documents, discover_source
from kbflow.tasks.sources.read import parse_documents
from kbflow.tasks.sources.sql_cursor import decode_cursor, save_cursors, stored_cursor
from kbflow.sources.sql import connected, sql_fingerprint, stream

ROWS = [  # id, subject, body, team, updated_at
    (1, "Login fails", "Reset the password from the sign-in page.", "acme", "2026-11-01T10:00:00"),
    (2, "Refund", "Refunds take five business days.", "acme", "2026-11-02T10:00:00"),
    (3, "Export", "Exports are CSV files sent by email.", "globex", "2026-11-03T10:00:00"),
    (4, "Sync", "Clients sync every ten seconds.", "globex", "2026-11-04T10:00:00"),
    (5, "Ports", "The server listens on port 8420.", "acme", "2026-11-05T10:00:00"),
]


@pytest.fixture
def database(tmp_path):
    """A SQLite file with a `tickets` table; returns its path."""
    path = tmp_path / "tickets.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE tickets (id INTEGER, subject TEXT, body, team TEXT, updated_at TEXT)")
        db.executemany("INSERT INTO tickets VALUES (?, ?, ?, ?, ?)", ROWS)
    return path


def tickets(database, **fields) -> Source:
    settings = {"name": "tickets", "kind": "sql", "url": f"sqlite:///{database}", "table": "tickets",
                "id_field": "id", "text_field": "body", "title_field": "subject", "tenant_field": "team"} | fields
    return source_config(**settings)


def execute(database, statement: str, *parameters) -> None:
    with sqlite3.connect(database) as db:
        db.execute(statement, parameters)


@pytest.fixture
def statements():
    """Every SQL statement kbflow sends while the test runs, in order."""
    sent: list[str] = []

    def record(connection, cursor, statement, parameters, context, executemany):
        sent.append(" ".join(statement.split()))

    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    yield sent
    sa.event.remove(sa.Engine, "before_cursor_execute", record)


def test_rows_become_items_with_stable_uris_and_their_own_tenant(database):
    discovery = discover_source(tickets(database), 50_000_000)
    items = {row["uri"]: row for row in discovery.items.to_pylist()}
    assert sorted(items) == [f"tickets#{row[0]}" for row in ROWS]
    assert items["tickets#3"]["doc_id"] == make_doc_id("tickets", "tickets#3")
    assert {uri: item["tenant"] for uri, item in items.items()} == {f"tickets#{r[0]}": r[3] for r in ROWS}
    assert discovery.items.column("path").to_pylist()[0] == "1"  # the key (JSON), what a worker reads by
    assert discovery.quarantined == [] and discovery.cursors == {}  # no cursor_field: nothing to keep

    documents, bad = parse_documents(discovery.items, [tickets(database)])
    parsed = {row["uri"]: row for row in documents.to_pylist()}
    assert bad == [] and parsed["tickets#2"]["text"] == ROWS[1][2] and parsed["tickets#2"]["title"] == "Refund"
    assert parsed["tickets#3"]["tenant"] == "globex"


def test_a_query_source_names_its_rows_query(database):
    source = tickets(database, table=None, query="SELECT id, subject, body, team FROM tickets WHERE team = 'acme'")
    uris = discover_source(source, 50_000_000).items.column("uri").to_pylist()
    assert sorted(uris) == ["query#1", "query#2", "query#5"]


def test_rows_are_streamed_in_batches_of_batch_rows(database):
    source = tickets(database, batch_rows=2)
    with connected(source) as connection:
        sizes = [len(rows) for rows in stream(connection, sa.text("SELECT id FROM tickets"), source.batch_rows)]
    assert sizes == [2, 2, 1]


def test_bad_rows_are_quarantined_with_reasons_and_the_rest_kept(database):
    execute(database, "INSERT INTO tickets VALUES (6, 'no text', NULL, 'acme', '2026-11-06')")
    execute(database, "INSERT INTO tickets VALUES (NULL, 'no id', 'text without id', 'acme', '2026-11-06')")
    execute(database, "INSERT INTO tickets VALUES (2, 'again', 'a second row 2', 'acme', '2026-11-06')")
    execute(database, "INSERT INTO tickets VALUES (7, 'blob', ?, 'acme', '2026-11-06')", b"caf\xe9 latin-1")
    execute(database, "INSERT INTO tickets VALUES (8, 'text', CAST(x'41ff42' AS TEXT), 'acme', '2026-11-06')")
    execute(database, "INSERT INTO tickets VALUES (9, 'blob ok', ?, 'acme', '2026-11-06')", "café".encode())
    execute(database, "INSERT INTO tickets VALUES (10, 'huge', ?, 'acme', '2026-11-06')", "x" * 52_428_800)
    execute(database, "INSERT INTO tickets VALUES (11, 'orphan', 'whose ticket?', NULL, '2026-11-06')")

    discovery = discover_source(tickets(database), 50_000_000)
    reasons = {(q.uri, q.reason) for q in discovery.quarantined}
    assert reasons == {("tickets#6", "null_text"), ("tickets", "missing_id"), ("tickets#2", "duplicate_id"),
                       ("tickets#7", "not_utf8"), ("tickets#8", "not_utf8"), ("tickets#10", "too_large"),
                       ("tickets#11", "missing_tenant")}
    too_large = next(q for q in discovery.quarantined if q.reason == "too_large")
    assert "52428800 bytes > quality.max_file_bytes = 50000000" in too_large.detail
    uris = set(discovery.items.column("uri").to_pylist())
    assert uris == {f"tickets#{n}" for n in (1, 2, 3, 4, 5, 9)}  # the UTF-8 blob is text
    # A set-aside row with an id keeps its last good chunks: it is not taken for deleted.
    assert ("tickets", "tickets#6") in discovery.unreadable and ("tickets", "tickets") not in discovery.unreadable
    documents, _ = parse_documents(discovery.items.filter(pa.compute.field("uri") == "tickets#9"), [tickets(database)])
    assert documents.column("text").to_pylist() == ["café"]


def test_a_repeated_id_publishes_the_kept_row_under_its_own_tenant(database):
    # Parsing reads by key, which returns both rows of a repeated id: the set-aside one's text must
    # not be published under the kept row's tenant (globex's ticket in acme's search).
    execute(database, "INSERT INTO tickets VALUES (1, 'Pricing', 'Globex pricing sheet.', 'globex', '2026-11-06')")
    discovery = discover_source(tickets(database), 50_000_000)
    assert [(q.uri, q.reason) for q in discovery.quarantined] == [("tickets#1", "duplicate_id")]
    documents, bad = parse_documents(discovery.items, [tickets(database)])
    first = next(row for row in documents.to_pylist() if row["uri"] == "tickets#1")
    assert bad == [] and (first["tenant"], first["text"], first["title"]) == ("acme", ROWS[0][2], ROWS[0][1])


def test_a_cursor_run_reads_only_rows_past_the_cursor_and_the_keys(database, tmp_path, statements):
    source = tickets(database, cursor_field="updated_at")
    store = Store.from_uri(str(tmp_path / "store"))
    first = discover_source(source, 50_000_000, store=store)
    assert decode_cursor(first.cursors["tickets"]) == "2026-11-05T10:00:00"
    published(store, first.items)
    save_cursors(store, first.cursors, "run-1")
    assert stored_cursor(store, "tickets") == "2026-11-05T10:00:00"

    execute(database, "UPDATE tickets SET body = 'Refunds take three days.', updated_at = '2026-11-07' WHERE id = 2")
    execute(database, "DELETE FROM tickets WHERE id = 4")
    execute(database, "INSERT INTO tickets VALUES (6, 'Late', 'A row with an old cursor.', 'acme', '2026-10-01')")
    statements.clear()
    second = discover_source(source, 50_000_000, store=store)
    changes = diff_against_documents(second, store.documents(["tickets"]))
    assert {row["uri"]: row["change"] for row in changes.to_parse.to_pylist()} == {"tickets#2": "changed",
                                                                                   "tickets#6": "new"}
    assert changes.deleted.column("uri").to_pylist() == ["tickets#4"] and changes.unchanged == 3
    assert decode_cursor(second.cursors["tickets"]) == "2026-11-07"
    selects = [s for s in statements if "FROM tickets" in s]
    assert selects[0].endswith("WHERE tickets.updated_at > ?")  # full rows: only past the cursor
    assert selects[1] == "SELECT tickets.id FROM tickets"  # the key-only scan
    assert "WHERE tickets.id IN" in selects[2] and len(selects) == 3  # the row the index did not know


@pytest.mark.parametrize("ids", [[10, 20, 30], ["a", 'a "quoted" id', "caf\u00e9", "back\\slash"]])
def test_a_cursor_run_finds_the_items_and_repeats_a_full_read_finds(tmp_path, ids):
    # The key scan builds items column-wise from the `documents` rows: they must be what reading
    # every row gives, for integer keys and for text keys that JSON escapes.
    database = tmp_path / "notes.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE notes (id, body TEXT, updated_at TEXT)")
        db.executemany("INSERT INTO notes VALUES (?, ?, '2026-11-01')", [(i, f"note {i!r}") for i in ids])
    fields = {"name": "notes", "kind": "sql", "url": f"sqlite:///{database}", "table": "notes", "id_field": "id",
              "text_field": "body"}
    store = Store.from_uri(str(tmp_path / "store"))
    first = discover_source(source_config(**fields, cursor_field="updated_at"), 50_000_000, store=store)
    published(store, first.items)
    save_cursors(store, first.cursors, "run-1")
    # None of these rows is past the cursor: only the key scan sees them. The new id comes twice:
    # read by key, both its rows come back, and its repeat was set aside twice (scan and read).
    execute(database, "INSERT INTO notes VALUES (?, 'the same id again', '2026-10-01')", ids[0])
    execute(database, "INSERT INTO notes VALUES (?, 'a new id, an old cursor', '2026-10-01')", ids[0] * 5)
    execute(database, "INSERT INTO notes VALUES (?, 'the new id again', '2026-10-01')", ids[0] * 5)

    by_cursor = discover_source(source_config(**fields, cursor_field="updated_at"), 50_000_000, store=store)
    every_row = discover_source(source_config(**fields), 50_000_000)
    assert by_cursor.items.sort_by("uri").to_pylist() == every_row.items.sort_by("uri").to_pylist()
    assert by_cursor.items.num_rows == len(ids) + 1
    assert sorted((q.uri, q.reason, q.detail) for q in by_cursor.quarantined) == sorted(
        (q.uri, q.reason, q.detail) for q in every_row.quarantined) == sorted([
        (f"notes#{ids[0]}", "duplicate_id", f"id {ids[0]!r} repeats in notes"),
        (f"notes#{ids[0] * 5}", "duplicate_id", f"id {ids[0] * 5!r} repeats in notes")])


def test_a_cursor_run_sets_aside_a_repeated_id_whose_new_row_is_past_the_cursor(database, tmp_path):
    # The row past the cursor is read in full; its older twin only shows in the key scan.
    source = tickets(database, cursor_field="updated_at")
    store = Store.from_uri(str(tmp_path / "store"))
    first = discover_source(source, 50_000_000, store=store)
    published(store, first.items)
    save_cursors(store, first.cursors, "run-1")
    execute(database, "INSERT INTO tickets VALUES (2, 'Again', 'A second row 2.', 'acme', '2026-11-07')")
    execute(database, "INSERT INTO tickets VALUES (3, 'Twice', 'A third row 3.', 'globex', '2026-11-08')")
    execute(database, "INSERT INTO tickets VALUES (3, 'Thrice', 'A fourth row 3.', 'globex', '2026-11-09')")
    second = discover_source(source, 50_000_000, store=store)
    assert sorted((q.uri, q.reason, q.detail) for q in second.quarantined) == [
        ("tickets#2", "duplicate_id", "id 2 repeats in tickets"),
        ("tickets#3", "duplicate_id", "id 3 repeats in tickets"), ("tickets#3", "duplicate_id", "id 3 repeats in tickets")]
    assert sorted(second.items.column("uri").to_pylist()) == [f"tickets#{row[0]}" for row in ROWS]


def published(store: Store, items: pa.Table) -> None:
    """The `documents` rows a publish of these items writes (what the next discovery diffs against)."""
    rows = [{**row, "title": None, "status": "active", "n_chunks": 1, "first_run_id": "run-1",
             "last_run_id": "run-1"} for row in items.to_pylist()]
    store.db.create_table("documents", data=pa.Table.from_pylist(rows, schema=DOCUMENTS), mode="overwrite")


def test_parsing_a_batch_reads_its_rows_by_key_in_one_query(database, statements):
    source = tickets(database)
    items = discover_source(source, 50_000_000).items.slice(1, 3)
    statements.clear()
    documents, bad = parse_documents(items, [source])
    assert bad == [] and documents.column("uri").to_pylist() == ["tickets#2", "tickets#3", "tickets#4"]
    (select,) = statements
    assert "WHERE tickets.id IN" in select


def test_a_batch_of_more_keys_than_a_statement_may_bind_is_read_in_several_queries(tmp_path, statements):
    # PostgreSQL refuses a statement with more than 65,535 parameters ("number of parameters must be
    # between 0 and 65535"): a batch_documents of 100,000 failed the parse as "cannot read table".
    database = tmp_path / "many.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE notes (id INTEGER, body TEXT)")
        db.executemany("INSERT INTO notes VALUES (?, ?)", [(n, f"note {n}") for n in range(25_000)])
    source = source_config(name="notes", kind="sql", url=f"sqlite:///{database}", table="notes", id_field="id",
                          text_field="body")
    items = discover_source(source, 50_000_000).items
    statements.clear()
    documents, bad = parse_documents(items, [source])
    assert bad == [] and documents.num_rows == 25_000
    assert [select.count("?") for select in statements] == [10_000, 10_000, 5_000]


@pytest.mark.parametrize("statement, reason", [
    ("DELETE FROM tickets WHERE id = 3", "record_vanished"),
    ("UPDATE tickets SET team = 'acme', body = 'Now acme''s' WHERE id = 3", "record_changed"),  # not under globex
])
def test_a_row_deleted_or_moved_to_another_tenant_before_its_batch_is_parsed_is_quarantined(database, statement,
                                                                                              reason):
    source = tickets(database)
    items = discover_source(source, 50_000_000).items
    execute(database, statement)
    documents, bad = parse_documents(items, [source])
    assert [(q.uri, q.reason) for q in bad] == [("tickets#3", reason)] and documents.num_rows == 4


def test_an_unset_url_variable_is_named(database, monkeypatch):
    monkeypatch.delenv("KB_TEST_DB_URL", raising=False)
    source = tickets(database, url=None, url_env="KB_TEST_DB_URL")
    with pytest.raises(ConfigError, match="environment variable KB_TEST_DB_URL, which is not set"):
        discover_source(source, 50_000_000)
    monkeypatch.setenv("KB_TEST_DB_URL", f"sqlite:///{database}")
    assert discover_source(source, 50_000_000).items.num_rows == len(ROWS)


@pytest.mark.parametrize("fields, problem", [
    ({"table": "tikets"}, "no such table: tikets"),
    ({"url": "sqlite:////nonexistent/folder/tickets.db"}, "there is no file /nonexistent/folder/tickets.db"),
])
def test_a_source_that_cannot_be_read_fails_naming_it(database, fields, problem):
    with pytest.raises(SourceUnreachable, match=f"source 'tickets': cannot read .*{problem}"):
        discover_source(tickets(database, **fields), 50_000_000)


def test_a_refused_connection_reads_as_the_drivers_two_sentences():
    # libpq says "Connection refused\n\tIs the server running …?": joined by a space it read as one sentence.
    from pg_server import free_port

    source = source_config(name="tickets", kind="sql", url=f"postgresql+psycopg://kb:secret@127.0.0.1:{free_port()}/kb",
                          table="tickets", id_field="id", text_field="body")
    with pytest.raises(SourceUnreachable) as failure:
        discover_source(source, 50_000_000)
    assert "failed: Connection refused. Is the server running on that host" in str(failure.value)


@pytest.mark.parametrize("url, module, fix", [
    ("mysql+pymysql://kb:secret@db/kb", "pymysql", "install the package that provides the module pymysql"),
    ("postgresql+psycopg://kb:secret@db/kb", "psycopg", "pip install 'kbflow[postgres]'"),
    ("nosuchdb://kb:secret@db/kb", None, "SQLAlchemy has no dialect 'nosuchdb'; install the package"),
])
def test_a_missing_driver_names_the_source_and_what_to_install(monkeypatch, url, module, fix):
    if module:
        monkeypatch.setitem(sys.modules, module, None)  # `import module` fails, as where it is not installed
    source = source_config(name="tickets", kind="sql", url=url, table="tickets", id_field="id", text_field="body")
    with pytest.raises(ConfigError) as failure:
        discover_source(source, 50_000_000)
    message = str(failure.value)
    assert message.startswith("sources: 'tickets': ") and fix in message and "secret" not in message


def test_a_missing_sqlite_file_fails_naming_it_and_is_not_created(tmp_path):
    missing = tmp_path / "tickest.db"  # a typo
    source = source_config(name="tickets", kind="sql", url=f"sqlite:///{missing}", table="tickets", id_field="id",
                          text_field="body")
    with pytest.raises(SourceUnreachable, match=f"source 'tickets': cannot read .*there is no file {missing}"):
        discover_source(source, 50_000_000)
    assert not missing.exists()


@pytest.mark.parametrize("cursor_field", [None, "updated_at"])
def test_the_fingerprint_moves_with_an_edit_and_a_deletion(database, cursor_field):
    source = tickets(database, cursor_field=cursor_field)
    before = sql_fingerprint(source)
    assert sql_fingerprint(source) == before
    execute(database, "UPDATE tickets SET body = 'edited', updated_at = '2026-12-01' WHERE id = 1")
    edited = sql_fingerprint(source)
    execute(database, "DELETE FROM tickets WHERE id = 2")
    assert len({before, edited, sql_fingerprint(source)}) == 3


def test_a_labeled_sql_source_gives_questions_and_answers(database):
    from kbflow.tasks.datasets.labeled import read_labeled_records

    execute(database, "CREATE TABLE qa (id INTEGER, question TEXT, answer TEXT)")
    execute(database, "INSERT INTO qa VALUES (1, 'How long do refunds take?', 'Five business days.')")
    execute(database, "INSERT INTO qa VALUES (2, 'Which port?', NULL)")
    source = source_config(name="qa", kind="sql", url=f"sqlite:///{database}", table="qa", id_field="id",
                          index=False, question_field="question", answer_field="answer")
    records, bad = read_labeled_records([source])
    assert [(r.id, r.question, r.answer) for r in records] == [("qa:1", "How long do refunds take?",
                                                                "Five business days."), ("qa:2", "Which port?", "")]
    assert records[0].doc_id == make_doc_id("qa", "qa#1") and bad == {"bad_record": 0}
