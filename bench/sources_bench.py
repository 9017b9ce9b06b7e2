"""Sources: what a no-change `ingest` costs against the bare cost of finding out nothing changed.

    python bench/sources_bench.py [--parts rows] [--rows 10000] [--repeats 3] [--out FILE]

rows: a `tickets` table of N rows in a real PostgreSQL (pgserver's binaries, or the system's,
started on loopback by tests/pg_server.py; an index on `updated_at`, as a cursor column has in
practice). After one first ingest of a sql source on it, measured side by side in one process,
median of `--repeats`, with and without `cursor_field = "updated_at"`:
1. keys: `SELECT id FROM tickets`, streamed (server-side cursor, 1,000 rows a round trip) through
   a pooled SQLAlchemy connection: the least any tool must read to see which rows exist (and so
   which were deleted); also rows: the configured columns of every row, what hashing them needs;
2. no-change ingest: the whole `ingest` flow of that source (Prefect flow run, store open, the
   sql reads, the diff against the `documents` table, run record), with no row changed.
Target: no-change ingest / keys <= 2. Also reported: the run's own `discover` stage (the sql
reads, the cursor and `documents` lookups, the diff), against keys and rows. The first ingest embeds with tests/fakes.py's HashEmbedder
(embedding is not what this measures, and the real model would take ~15 minutes for 10,000 rows
here); the no-change runs embed nothing either way.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import kbflow  # noqa: F401  - offline / no-analytics defaults first

TESTS = Path(__file__).resolve().parent.parent / "tests"


def timed(action):
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def use_hash_embedder() -> None:
    """Embed with the test suite's HashEmbedder (as tests/conftest.py's hash_embedder fixture does)."""
    sys.path.insert(0, str(TESTS))
    import kbflow.flows.ingest  # noqa: F401  - imported before its loader is replaced
    import kbflow.models
    from fakes import HashEmbedder

    embedders: dict = {}
    real = kbflow.models.load_embedder
    for module in [m for m in list(sys.modules.values()) if getattr(m, "load_embedder", None) is real]:
        module.load_embedder = lambda config: embedders.setdefault(config.model, HashEmbedder(name=config.model))


def fill_tickets(url: str, count: int) -> float:
    """`count` distinct support tickets in a `tickets` table; seconds taken."""
    import sqlalchemy as sa

    started = time.perf_counter()
    with sa.create_engine(url).begin() as connection:
        connection.execute(sa.text(
            "CREATE TABLE tickets (id integer PRIMARY KEY, subject text, body text, team text, "
            "updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"))
        connection.execute(sa.text("CREATE INDEX tickets_updated_at ON tickets (updated_at)"))
        connection.execute(sa.text(
            "INSERT INTO tickets (id, subject, body, team) SELECT n, 'Ticket ' || n, "
            "'Ticket category ' || n % 97 || ' is answered by team ' || n % 13 || '. Escalate after ' || "
            "n % 7 + 1 || ' days; refunds for order ' || n || ' follow policy ' || n % 5 || '.', "
            "'team-' || n % 4 FROM generate_series(1, :count) AS n"), {"count": count})
        connection.execute(sa.text("ANALYZE tickets"))
    return time.perf_counter() - started


def bench_rows(count: int, repeats: int) -> dict:
    import os

    sys.path.insert(0, str(TESTS))
    from pg_server import start_postgres

    server = start_postgres()
    try:
        url = server.url()
        fill_s = fill_tickets(url, count)
        os.environ["KB_BENCH_DB_URL"] = url
        use_hash_embedder()
        import sqlalchemy as sa

        from kbflow.config import load_config
        from kbflow.flows.ingest import ingest
        from kbflow.store import Store

        engine = sa.create_engine(url)

        def read(columns: str) -> int:
            with engine.connect() as connection:
                result = connection.execution_options(stream_results=True, yield_per=1000).execute(
                    sa.text(f"SELECT {columns} FROM tickets"))
                return sum(len(batch) for batch in result.partitions(1000))

        def keys() -> int:
            return read("id")

        def rows() -> int:  # what a run without cursor_field must read to hash every row
            return read("id, body, subject, team")

        keys()  # the pool holds a connection, as the flow's engine does after its first run
        results = {"rows": count, "fill_s": round(fill_s, 1)}
        for mode, cursor in (("hashed", ""), ("cursor", 'cursor_field = "updated_at"\n')):
            work = Path(tempfile.mkdtemp(prefix=f"kbflow-rows-bench-{mode}-"))
            config_path = work / "kbflow.toml"
            config_path.write_text(
                '[store]\nuri = ".kbflow"\n\n[quality]\nmin_unique_chunk_ratio = 0.0\n\n'
                '[[sources]]\nname = "tickets"\nkind = "sql"\nurl_env = "KB_BENCH_DB_URL"\ntable = "tickets"\n'
                f'id_field = "id"\ntext_field = "body"\ntitle_field = "subject"\ntenant_field = "team"\n{cursor}',
                encoding="utf-8")
            first, first_s = timed(lambda: ingest(config_path=str(config_path)))
            assert first["status"] == "published" and first["documents"]["new"] == count, first
            keys_s, rows_s, ingest_s, stages = [], [], [], []
            for _ in range(repeats):  # interleaved, so all see the same machine load
                for action, times in ((keys, keys_s), (rows, rows_s)):
                    read_count, seconds = timed(action)
                    assert read_count == count
                    times.append(seconds)
                report, seconds = timed(lambda: ingest(config_path=str(config_path)))
                assert report["status"] == "no_change" and report["documents"]["unchanged"] == count, report
                ingest_s.append(seconds)
                record = Store(load_config(config_path).store).run(report["run_id"])
                stages.append({"in_flow_s": round(record["duration_s"], 3), **json.loads(record["stage_durations"])})
            results[mode] = {
                "first_ingest_s": round(first_s, 1),
                "keys_s": [round(s, 3) for s in keys_s], "no_change_ingest_s": [round(s, 3) for s in ingest_s],
                "keys_median_s": round(statistics.median(keys_s), 3),
                "rows_median_s": round(statistics.median(rows_s), 3),
                "no_change_median_s": round(statistics.median(ingest_s), 3),
                "ratio": round(statistics.median(ingest_s) / statistics.median(keys_s), 2),
                "discover_median_s": round(statistics.median(s["discover"] for s in stages), 3),
                "discover_ratio": round(statistics.median(s["discover"] for s in stages) / statistics.median(keys_s), 2),
                "discover_to_rows_ratio": round(statistics.median(s["discover"] for s in stages)
                                                / statistics.median(rows_s), 2),
                "no_change_stage_durations": stages,
            }
        engine.dispose()
        return results
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="rows", help="comma-separated: rows")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = {}
    if "rows" in args.parts.split(","):
        results["rows"] = bench_rows(args.rows, args.repeats)
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
