"""SQL sources on a real PostgreSQL (started by the suite, tests/pg_server.py), through real ingest runs.

Each test gets its own database. The fast test embedder, except the Dask test, whose worker
processes load the real packaged model themselves.
"""

from __future__ import annotations

import json
import secrets

import lancedb
import pytest
import sqlalchemy as sa

import kbflow.sources.sql as sql_source
from kbflow.config import load_config
from kbflow.errors import SourceUnreachable
from kbflow.flows.ingest import ingest
from kbflow.lineage import trace_chunk
from kbflow.search import search
from kbflow.store import Store

from conftest import write_config

pytestmark = pytest.mark.usefixtures("prefect_harness")

TICKETS = [  # id, subject, body, team
    (1, "Login fails", "Reset the password from the sign-in page, then log in again.", "acme"),
    (2, "Refund", "Refunds take five business days after the request is approved.", "acme"),
    (3, "Export", "Exports are CSV files sent by email to the account owner.", "globex"),
    (4, "Sync", "Desktop clients sync every ten seconds over HTTPS.", "globex"),
    (5, "Ports", "The server listens on port 8420 unless --port says otherwise.", "acme"),
]


@pytest.fixture
def database(postgres, monkeypatch):
    """A fresh database with a `tickets` table; its URL is in KB_TEST_DB_URL. Returns the URL."""
    name = f"kb_{secrets.token_hex(4)}"
    admin = sa.create_engine(postgres.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    url = postgres.url(name)
    with sa.create_engine(url).begin() as connection:
        connection.execute(sa.text("CREATE TABLE tickets (id integer PRIMARY KEY, subject text, body text, "
                                   "team text, updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"))
        connection.execute(sa.text("INSERT INTO tickets (id, subject, body, team) VALUES (:id, :subject, :body, :team)"),
                           [dict(zip(("id", "subject", "body", "team"), row)) for row in TICKETS])
    monkeypatch.setenv("KB_TEST_DB_URL", url)
    return url


def execute(url: str, statement: str, **parameters) -> None:
    with sa.create_engine(url).begin() as connection:
        connection.execute(sa.text(statement), parameters)


def config_of(tmp_path, extra: str = "", table: str = "tickets") -> str:
    source = f"""
        [[sources]]
        name = "tickets"
        kind = "sql"
        url_env = "KB_TEST_DB_URL"
        table = "{table}"
        id_field = "id"
        text_field = "body"
        title_field = "subject"
        tenant_field = "team"
        batch_rows = 2
        {extra}
        """
    return str(write_config(tmp_path, source))


def chunk_texts(config_path: str) -> dict[str, str]:
    rows = lancedb.connect(load_config(config_path).store.uri).open_table("chunks").to_arrow().to_pylist()
    return {row["uri"]: row["text"] for row in rows}


@pytest.mark.parametrize("cursor", [False, True], ids=["hashed", "cursor"])
def test_new_changed_unchanged_and_deleted_rows_are_found_exactly(tmp_path, database, hash_embedder, cursor):
    config_path = config_of(tmp_path, 'cursor_field = "updated_at"' if cursor else "")
    first = ingest(config_path=config_path)
    assert first["status"] == "published" and first["documents"]["new"] == len(TICKETS)
    assert set(chunk_texts(config_path)) == {f"tickets#{row[0]}" for row in TICKETS}
    assert ingest(config_path=config_path)["documents"]["unchanged"] == len(TICKETS)

    execute(database, "UPDATE tickets SET body = 'Refunds take three days now.', updated_at = clock_timestamp() "
                      "WHERE id = 2")
    execute(database, "DELETE FROM tickets WHERE id = 4")
    execute(database, "INSERT INTO tickets (id, subject, body, team) VALUES (6, 'Billing', "
                      "'Invoices are emailed on the first day of each month.', 'globex')")
    third = ingest(config_path=config_path)
    assert third["documents"] == {"new": 1, "changed": 1, "unchanged": 3, "deleted": 1,
        "quarantined": 0, "acl_changed": 0}
    texts = chunk_texts(config_path)
    assert "tickets#4" not in texts and "three days" in texts["tickets#2"] and "Invoices" in texts["tickets#6"]
    assert ingest(config_path=config_path)["status"] == "no_change"
    cursors = Store(load_config(config_path).store).table("source_cursors").to_arrow().to_pylist() if cursor else []
    assert [row["run_id"] for row in cursors] == ([third["run_id"]] if cursor else [])


def test_a_no_change_cursor_run_reads_only_keys_and_no_row_past_the_cursor(tmp_path, database, hash_embedder,
                                                                            monkeypatch):
    config_path = config_of(tmp_path, 'cursor_field = "updated_at"')
    ingest(config_path=config_path)
    statements, streamed = [], []

    def record(connection, cursor, statement, parameters, context, executemany):
        statements.append(" ".join(statement.split()))

    def counting(read):  # rows (or keys) each streamed statement returned
        def counted(connection, statement, batch_rows):
            rows = 0
            for batch in read(connection, statement, batch_rows):
                rows += len(batch)
                yield batch
            streamed.append((read.__name__, rows))
        return counted

    for name in ("stream", "stream_keys"):
        monkeypatch.setattr(sql_source, name, counting(getattr(sql_source, name)))
    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    try:
        report = ingest(config_path=config_path)
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", record)
    assert report["status"] == "no_change" and report["documents"]["unchanged"] == len(TICKETS)
    reads = [statement for statement in statements if "tickets" in statement]
    assert len(reads) == 2, reads
    assert reads[0].startswith("SELECT tickets.id, tickets.body, tickets.subject, tickets.team, tickets.updated_at "
                               "FROM tickets WHERE tickets.updated_at > ")
    assert reads[1] == "SELECT tickets.id FROM tickets"  # the deletion scan: the key column only
    assert streamed == [("stream", 0), ("stream_keys", len(TICKETS))]  # no row past the cursor; every key


def test_bad_rows_are_quarantined_and_the_rest_published(tmp_path, database, hash_embedder):
    # A bytea text column (what a BLOB of text is in PostgreSQL) and no primary key: ids may repeat.
    execute(database, "CREATE TABLE notes (id integer, subject text, body bytea, team text)")
    rows = [(1, "ok", "Passwords reset from the sign-in page.".encode()), (2, "latin-1", "café crème".encode("latin-1")),
            (3, "null", None), (1, "repeat", b"a second row with id 1"), (None, "no id", b"a row without id"),
            (4, "huge", b"x" * 52_428_800), (5, "ok too", "Refunds take five business days.".encode())]
    for id_, subject, body in rows:
        execute(database, "INSERT INTO notes VALUES (:id, :subject, :body, 'acme')", id=id_, subject=subject, body=body)
    # Five bad rows of seven: over the default share that blocks a publish, allowed here.
    config_path = config_of(tmp_path, "[quality]\nmax_quarantined_share = 0.9", table="notes")
    report = ingest(config_path=config_path)
    assert report["status"] == "published" and report["documents"]["new"] == 2
    assert set(chunk_texts(config_path)) == {"notes#1", "notes#5"}
    store = Store(load_config(config_path).store)
    quarantine = store.table("quarantine").to_arrow().to_pylist()
    assert {(row["uri"], row["reason"]) for row in quarantine} == {
        ("notes#2", "not_utf8"), ("notes#3", "null_text"), ("notes#1", "duplicate_id"), ("notes", "missing_id"),
        ("notes#4", "too_large")}
    password = sa.make_url(database).password
    assert not any(password in json.dumps(row, default=str) for row in quarantine + store.runs())


@pytest.mark.parametrize("wrong", ["password", "port"])
def test_wrong_credentials_or_port_fail_the_run_clearly_and_leave_the_index(tmp_path, database, hash_embedder,
                                                                             postgres, monkeypatch, wrong):
    config_path = config_of(tmp_path)
    ingest(config_path=config_path)
    store = Store(load_config(config_path).store)
    versions = {name: store.version(name) for name in ("chunks", "documents")}
    bad_url = database.replace(postgres.password, "not-the-Pa55word") if wrong == "password" else \
        database.replace(f":{postgres.port}/", f":{free_port()}/")
    monkeypatch.setenv("KB_TEST_DB_URL", bad_url)
    execute(database, "DELETE FROM tickets")  # were it read, every document would go

    with pytest.raises(SourceUnreachable) as failure:
        ingest(config_path=config_path)
    message = str(failure.value)
    assert message.startswith("source 'tickets': cannot read table tickets from postgresql+psycopg://kbflow:***@127.0.0.1:")
    assert ("password authentication failed" if wrong == "password" else
            "Connection refused. Is the server running on that host") in message  # libpq's two lines, two sentences
    assert {name: store.version(name) for name in ("chunks", "documents")} == versions
    (failed, *_) = store.runs()
    assert failed["status"] == "failed" and "cannot read table tickets" in failed["error"]
    for secret in (postgres.password, "not-the-Pa55word"):
        assert secret not in message and secret not in failed["error"]


def free_port() -> int:
    from pg_server import free_port as port

    return port()


def test_each_row_lands_in_its_tenant(tmp_path, database, hash_embedder):
    config_path = config_of(tmp_path)
    ingest(config_path=config_path)
    rows = lancedb.connect(load_config(config_path).store.uri).open_table("chunks").to_arrow().to_pylist()
    assert {row["uri"]: row["tenant"] for row in rows} == {f"tickets#{id_}": team for id_, _, _, team in TICKETS}
    config = load_config(config_path)
    (hits,) = search(config, ["How long do refunds take?"], k=10, tenant="globex", mode="vector")
    assert {hit["uri"] for hit in hits} == {"tickets#3", "tickets#4"}  # globex's rows, and only those
    (hits,) = search(config, ["How long do refunds take?"], k=1, tenant="acme", mode="fts")
    assert hits[0]["uri"] == "tickets#2"
    traced = trace_chunk(config, hits[0]["chunk_id"])  # a row has no file: its uri says where it is
    assert traced["document"]["uri"] == "tickets#2" and traced["document"]["path"] is None
    assert traced["source"] == {"name": "tickets", "kind": "sql", "path": None, "tenant": "default"}
    # A row that moves to another tenant moves with its chunks.
    execute(database, "UPDATE tickets SET team = 'globex' WHERE id = 2")
    assert ingest(config_path=config_path)["documents"]["changed"] == 1
    (hits,) = search(config, ["How long do refunds take?"], k=1, tenant="globex", mode="fts")
    assert hits[0]["uri"] == "tickets#2" and hits[0]["tenant"] == "globex"


@pytest.mark.parametrize("key_type, key", [("uuid", "gen_random_uuid()"), ("numeric", "n * 1.5"),
                                            ("date", "date '2026-01-01' + n")])
def test_rows_keyed_by_a_uuid_numeric_or_date_are_read_back_by_key(tmp_path, database, hash_embedder, key_type, key):
    # An item carries its key as JSON text; bound as varchar, PostgreSQL refused `uuid = character varying`.
    execute(database, f"CREATE TABLE notes (id {key_type}, subject text, body text, team text)")
    execute(database, f"INSERT INTO notes SELECT {key}, 'Note', 'Note number ' || n || ' about backups.', 'acme' "
                      "FROM generate_series(1, 3) n")
    config_path = config_of(tmp_path, table="notes")
    assert ingest(config_path=config_path)["documents"] == {"new": 3, "changed": 0, "unchanged": 0, "deleted": 0,
                                                            "quarantined": 0, "acl_changed": 0}
    # each chunk's heading line is its row's title (a heading path starts with the document's title)
    assert sorted(chunk_texts(config_path).values()) == [f"Note\nNote number {n} about backups." for n in (1, 2, 3)]


@pytest.mark.model
def test_dask_workers_read_their_batches_rows_from_the_database(tmp_path, database):
    # A 2-process LocalCluster: a batch carries row keys only (DISCOVERED has no text column),
    # and each worker reads its rows by key from PostgreSQL with the URL from its own environment:
    # counted, the flow's process makes one read by key per batch fewer than on the default runner.
    for name in ("default", "dask"):
        (tmp_path / name).mkdir()
    default_path = config_of(tmp_path / "default", "[ingest]\nbatch_documents = 1")
    dask_path = config_of(tmp_path / "dask", "[ingest]\nbatch_documents = 1\n[runner]\nworkers = 2")
    by_key = []  # reads by key made in this (the flow's) process

    def record(connection, cursor, statement, parameters, context, executemany):
        if "WHERE tickets.id IN" in statement:
            by_key.append(statement)

    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    try:
        assert ingest(config_path=default_path)["status"] == "published"
        in_flow_default = len(by_key)
        report = ingest(config_path=dask_path, runner="dask")
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", record)
    assert report["status"] == "published" and report["documents"]["new"] == len(TICKETS)
    # One read per batch of 1 for the boilerplate's line counts (before any batch, in the flow) and,
    # on the default runner, one per batch for parse; on Dask the parse reads happen in the workers.
    assert in_flow_default == 2 * len(TICKETS) and len(by_key) - in_flow_default == len(TICKETS)
    chunks = [lancedb.connect(load_config(path).store.uri).open_table("chunks").to_arrow()
              .select(["chunk_id", "text", "tenant"]).sort_by("chunk_id").to_pylist() for path in (default_path, dask_path)]
    assert chunks[0] == chunks[1] and len(chunks[0]) == len(TICKETS)


def test_after_a_rollback_the_next_run_reads_every_row_again(tmp_path, database, hash_embedder):
    # The restored `documents` are older than the cursor: were it kept, the edit below would
    # never be read again (its cursor is behind the mark) and the index would stay rolled back.
    from kbflow.flows.rollback import rollback

    config_path = config_of(tmp_path, 'cursor_field = "updated_at"')
    first = ingest(config_path=config_path)
    execute(database, "UPDATE tickets SET body = 'Refunds take three days now.', updated_at = clock_timestamp() "
                      "WHERE id = 2")
    assert ingest(config_path=config_path)["documents"]["changed"] == 1
    rollback(config_path=config_path, to_run=first["run_id"])
    assert "three days" not in chunk_texts(config_path)["tickets#2"]
    report = ingest(config_path=config_path)
    assert report["documents"]["changed"] == 1 and "three days" in chunk_texts(config_path)["tickets#2"]
