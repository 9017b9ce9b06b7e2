"""Sources: what a no-change `ingest` costs against the bare cost of finding out nothing changed.

    python bench/sources_bench.py [--parts objects,rows] [--objects 10000] [--rows 10000[,100000]] [--repeats 3] [--out FILE]

objects: N small markdown objects in an S3 bucket served by moto (`python -m moto.server`, its own
process, on loopback). After one first ingest of the bucket source, measured side by side in one
process, median of `--repeats`:
1. list: an fsspec listing of the prefix (`s3fs.find(prefix, detail=True)`, listing cache cleared),
   the least any tool must do to see whether anything changed;
2. no-change ingest: the whole `ingest` flow of that source (Prefect flow run, store open, listing,
   change tokens against the `documents` table, run record), with no object changed.
Target: no-change ingest / list <= 2. The first ingest embeds with tests/fakes.py's HashEmbedder
(embedding is not what this measures, and the real model would take ~15 minutes for 10,000 chunks
here); the no-change runs embed nothing either way.

rows: a `tickets` table of N rows in a real PostgreSQL (pgserver's binaries, or the system's,
started on loopback by tests/pg_server.py; an index on `updated_at`, as a cursor column has in
practice); `--rows 10000,100000` measures each size on its own server. After one first ingest of a
sql source on it, measured side by side in one process, interleaved, median of `--repeats`, with
and without `cursor_field = "updated_at"`:
1. keys: `SELECT id FROM tickets`, streamed (server-side cursor, 1,000 rows a round trip) through
   a pooled SQLAlchemy connection: the least any tool must read to see which rows exist (and so
   which were deleted); also rows: the configured columns of every row, what hashing them needs;
2. empty flow: a Prefect flow run whose body does nothing, in the same process and settings
   (heartbeats off, as kbflow.flows sets): the floor every kbflow run pays, since every ingest is a
   recorded Prefect flow run; also a flow run with one task that does nothing, the floor of a run
   whose work is one task, as a no-change ingest's is (`discover`);
3. no-change ingest: the whole `ingest` flow of that source (Prefect flow run, store open, the
   sql reads, the diff against the `documents` table, run record), with no row changed.
Target: no-change ingest / keys <= 2. Also reported: empty flow / keys (the floor alone),
(no-change ingest - empty flow) / keys (kbflow's own work above that floor; its Prefect task run
included, and without it: - the one-task flow instead), and the run's own
`discover` stage (the sql reads, the cursor lookup, the diff) against keys and rows. The first
ingest embeds with tests/fakes.py's HashEmbedder (embedding is not what this measures, and the real
model would take ~15 minutes for 10,000 rows here); the no-change runs embed nothing either way.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import kbflow  # noqa: F401  - offline / no-analytics defaults first

TESTS = Path(__file__).resolve().parent.parent / "tests"
BUCKET = "bench-sources"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


def timed(action):
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def no_change_run(config_path: Path, count: int) -> tuple[float, dict]:
    """A whole `ingest` that must find nothing changed: its seconds, and its run record's stage times."""
    from kbflow.flows.ingest import ingest

    from kbflow.config import load_config
    from kbflow.store import Store

    report, seconds = timed(lambda: ingest(config_path=str(config_path)))
    assert report["status"] == "no_change" and report["documents"]["unchanged"] == count, report
    record = Store(load_config(config_path).store).run(report["run_id"])
    return seconds, {"in_flow_s": round(record["duration_s"], 3), **json.loads(record["stage_durations"])}


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2)
            return process, endpoint
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("moto did not start")


def upload_objects(endpoint: str, prefix: str, count: int) -> float:
    """`count` small, distinct markdown objects under prefix; seconds taken."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=BUCKET)

    def put(number: int) -> None:
        body = (f"# Article {number}\n\nTicket category {number % 97} is answered by team {number % 13}. "
                f"Escalate after {number % 7 + 1} days; refunds for order {number} follow policy {number % 5}.\n")
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/{number // 1000:02d}/article-{number:05d}.md", Body=body.encode())

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(count)))
    return time.perf_counter() - started


def use_hash_embedder() -> None:
    """Embed with the test suite's HashEmbedder (as tests/conftest.py's hash_embedder fixture does)."""
    sys.path.insert(0, str(TESTS))
    import kbflow.flows.ingest
    from fakes import HashEmbedder

    import kbflow.models

    embedders: dict = {}
    real = kbflow.models.load_embedder
    for module in [m for m in list(sys.modules.values()) if getattr(m, "load_embedder", None) is real]:
        module.load_embedder = lambda config: embedders.setdefault(config.model, HashEmbedder(name=config.model))


def bench_objects(count: int, repeats: int) -> dict:
    os.environ.update(CREDENTIALS)
    process, endpoint = start_moto()
    try:
        prefix = "kb"
        upload_s = upload_objects(endpoint, prefix, count)
        work = Path(tempfile.mkdtemp(prefix="kbflow-sources-bench-"))
        config_path = work / "kbflow.toml"
        config_path.write_text(
            '[store]\nuri = ".kbflow"\n\n[quality]\nmin_unique_chunk_ratio = 0.0\n\n'
            f'[[sources]]\nname = "kb"\nkind = "files"\npath = "s3://{BUCKET}/{prefix}"\n'
            f'[sources.storage_options]\nendpoint_url = "{endpoint}"\n', encoding="utf-8")
        use_hash_embedder()
        from kbflow.flows.ingest import ingest
        from kbflow.tasks.object_source import open_filesystem

        from kbflow.config import load_config

        first, first_s = timed(lambda path=config_path: ingest(config_path=str(path)))
        assert first["status"] == "published" and first["documents"]["new"] == count, first

        fs = open_filesystem(load_config(config_path).sources[0])

        def listing() -> int:
            fs.invalidate_cache()
            return len(fs.find(f"{BUCKET}/{prefix}", detail=True))

        list_s, ingest_s, stages = [], [], []
        for _ in range(repeats):  # interleaved, so both see the same machine load
            listed, seconds = timed(listing)
            assert listed == count
            list_s.append(seconds)
            seconds, stage = no_change_run(config_path, count)
            ingest_s.append(seconds)
            stages.append(stage)
        return {
            "objects": count, "upload_s": round(upload_s, 1), "first_ingest_s": round(first_s, 1),
            "list_s": [round(s, 3) for s in list_s], "no_change_ingest_s": [round(s, 3) for s in ingest_s],
            "list_median_s": round(statistics.median(list_s), 3),
            "no_change_median_s": round(statistics.median(ingest_s), 3),
            "ratio": round(statistics.median(ingest_s) / statistics.median(list_s), 2),
            "no_change_stage_durations": stages,
        }
    finally:
        process.terminate()
        process.wait(10)


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
    sys.path.insert(0, str(TESTS))
    from pg_server import start_postgres

    server = start_postgres()
    try:
        url = server.url()
        fill_s = fill_tickets(url, count)
        os.environ["KB_BENCH_DB_URL"] = url
        use_hash_embedder()
        import sqlalchemy as sa
        from kbflow.flows.ingest import ingest


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

        from prefect import flow, task

        @flow(name="empty")
        def empty_flow() -> None:
            """Nothing: what a flow run costs before its body does anything."""

        @task(name="nothing")
        def nothing() -> None:
            """Nothing, as a task run."""

        @flow(name="one-task")
        def task_flow() -> None:
            """One task that does nothing: a flow run with one task run."""
            nothing()

        keys()  # the pool holds a connection, as the flow's engine does after its first run
        empty_flow(), task_flow()  # a flow's first run registers it with the API (ingest's: its first ingest)
        results = {"rows": count, "fill_s": round(fill_s, 1), "load_average": os.getloadavg()}
        for mode, cursor in (("hashed", ""), ("cursor", 'cursor_field = "updated_at"\n')):
            work = Path(tempfile.mkdtemp(prefix=f"kbflow-rows-bench-{mode}-"))
            config_path = work / "kbflow.toml"
            config_path.write_text(
                '[store]\nuri = ".kbflow"\n\n[quality]\nmin_unique_chunk_ratio = 0.0\n\n'
                '[[sources]]\nname = "tickets"\nkind = "sql"\nurl_env = "KB_BENCH_DB_URL"\ntable = "tickets"\n'
                f'id_field = "id"\ntext_field = "body"\ntitle_field = "subject"\ntenant_field = "team"\n{cursor}',
                encoding="utf-8")
            first, first_s = timed(lambda path=config_path: ingest(config_path=str(path)))
            assert first["status"] == "published" and first["documents"]["new"] == count, first
            keys_s, rows_s, empty_s, task_flow_s, ingest_s, stages = [], [], [], [], [], []
            for _ in range(repeats):  # interleaved, so all see the same machine load
                for action, times in ((keys, keys_s), (rows, rows_s)):
                    read_count, seconds = timed(action)
                    assert read_count == count
                    times.append(seconds)
                empty_s.append(timed(empty_flow)[1])
                task_flow_s.append(timed(task_flow)[1])
                seconds, stage = no_change_run(config_path, count)
                ingest_s.append(seconds)
                stages.append(stage)
            keys_median, floor = statistics.median(keys_s), statistics.median(empty_s)
            task_floor = statistics.median(task_flow_s)
            ingest_median = statistics.median(ingest_s)
            discover = statistics.median(s["discover"] for s in stages)
            results[mode] = {
                "first_ingest_s": round(first_s, 1),
                "keys_s": [round(s, 4) for s in keys_s], "empty_flow_s": [round(s, 3) for s in empty_s],
                "one_task_flow_s": [round(s, 3) for s in task_flow_s],
                "no_change_ingest_s": [round(s, 3) for s in ingest_s],
                "keys_median_s": round(keys_median, 4),
                "rows_median_s": round(statistics.median(rows_s), 4),
                "empty_flow_median_s": round(floor, 4),
                "one_task_flow_median_s": round(task_floor, 4),
                "no_change_median_s": round(ingest_median, 4),
                "ratio": round(ingest_median / keys_median, 2),  # the target: <= 2
                "floor_ratio": round(floor / keys_median, 2),
                "own_ratio": round((ingest_median - floor) / keys_median, 2),
                "own_without_task_run_ratio": round((ingest_median - task_floor) / keys_median, 2),
                "in_flow_median_s": round(statistics.median(s["in_flow_s"] for s in stages), 4),
                "discover_median_s": round(discover, 4),
                "discover_ratio": round(discover / keys_median, 2),
                "discover_to_rows_ratio": round(discover / statistics.median(rows_s), 2),
                "no_change_stage_durations": stages,
            }
        results["load_average_after"] = os.getloadavg()
        engine.dispose()
        return results
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="objects,rows", help="comma-separated: objects, rows")
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--rows", default="10000", help="comma-separated table sizes, each on its own server")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = {}
    if "objects" in args.parts.split(","):
        results["objects"] = bench_objects(args.objects, args.repeats)
    if "rows" in args.parts.split(","):
        sizes = [int(size) for size in args.rows.split(",")]
        measured = [bench_rows(size, args.repeats) for size in sizes]
        results["rows"] = measured  # one entry a table size
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
