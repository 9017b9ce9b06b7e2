"""Sources: what a no-change `ingest` costs against the bare cost of finding out nothing changed.

    python bench/sources_bench.py [--parts objects,rows] [--objects 10000] [--rows 10000[,100000]] [--repeats 3] [--out FILE]

objects: N small markdown objects in an S3 bucket served by moto (`python -m moto.server`, its own
process, on loopback). After one first ingest of the bucket source, measured side by side in one
process, median of `--repeats`:
1. list: an fsspec listing of the prefix (`s3fs.find(prefix, detail=True)`, listing cache cleared),
   the least any tool must do to see whether anything changed;
2. no-change ingest: the whole `ingest` flow of that source (Prefect flow run, store open, listing,
   change tokens against the `documents` table, run record), with no object changed.
Target: no-change ingest / list <= 2. Then the same as whole processes (`whole_processes`):
`kbflow ingest` through the warm worker, and in-process, beside a Python process that lists the
prefix with s3fs (`LIST_PROCESS`). The first ingest embeds with tests/fakes.py's HashEmbedder
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
Target: no-change ingest / keys <= 2. Then the same as whole processes (what a user waits
for, start-up included; `whole_processes`): `kbflow ingest` through the warm worker of `kbflow
server start`, and in-process (`KBFLOW_NO_WORKER=1`), beside a Python process that streams the
keys as 1. does (`KEYS_PROCESS`) and beside `psql -At -c "SELECT id FROM tickets"`. Also reported: empty flow / keys (the floor alone),
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


# Whole-process peers: the least a user's own script must do, as a process of its own.
KEYS_PROCESS = """
import os, sqlalchemy as sa
with sa.create_engine(os.environ["KB_BENCH_DB_URL"]).connect() as connection:
    result = connection.execution_options(stream_results=True, yield_per=1000).execute(sa.text("SELECT id FROM tickets"))
    print(sum(len(batch) for batch in result.partitions(1000)))
"""
LIST_PROCESS = """
import os, sys, s3fs
fs = s3fs.S3FileSystem(endpoint_url=os.environ["KB_BENCH_S3_ENDPOINT"])
print(len(fs.find(sys.argv[1], detail=True)))
"""


def user_environment(**extra: str) -> dict[str, str]:
    """This process's environment without the Prefect API it started for itself: a user's shell."""
    return {**{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL" and not k.startswith("KBFLOW_")},
            **extra}


def whole_processes(config_path: Path, count: int, peers: dict[str, tuple[list[str], object]],
                    repeats: int) -> dict:
    """`kbflow ingest` as a user runs it, as whole processes, beside whole peer processes, interleaved.

    With `kbflow server start` (a Prefect server and the warm worker) running, as README advises
    for frequent runs; also in-process (`KBFLOW_NO_WORKER=1`, a temporary Prefect server per
    command). `peers`: name -> (command, check of its stdout). Median of `repeats`, after one
    round that is not counted (the worker's and the peers' first runs warm their caches).
    """
    kbflow = str(Path(sys.executable).parent / "kbflow")
    env = user_environment()

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([kbflow, *args, "--config", str(config_path)], cwd=config_path.parent,
                              env={**env, **extra}, capture_output=True, text=True, timeout=900)

    def ingest(**extra: str) -> None:
        done = cli("ingest", "--json", **extra)
        report = json.loads(done.stdout)
        assert report["status"] == "no_change" and report["documents"]["unchanged"] == count, done.stderr[-2000:]

    started = cli("server", "start")
    assert started.returncode == 0, started.stderr[-2000:]
    samples: dict[str, list[float]] = {"worker": [], "in_process": [], **{name: [] for name in peers}}
    try:
        for round_number in range(repeats + 1):
            timings = {"worker": timed(ingest)[1],
                       "in_process": timed(lambda: ingest(KBFLOW_NO_WORKER="1"))[1]}
            for name, (command, check) in peers.items():
                done, timings[name] = timed(lambda command=command: subprocess.run(
                    command, env=env, capture_output=True, text=True, timeout=900, check=True))
                assert check(done.stdout), done.stdout[-500:]
            if round_number:
                for name, seconds in timings.items():
                    samples[name].append(seconds)
    finally:
        cli("server", "stop")
    medians = {name: statistics.median(times) for name, times in samples.items()}
    first_peer = next(iter(peers))
    return {
        "samples_s": {name: [round(s, 3) for s in times] for name, times in samples.items()},
        "median_s": {name: round(seconds, 3) for name, seconds in medians.items()},
        # the target, as a user waits for it: <= 2
        "ratio": round(medians["worker"] / medians[first_peer], 2),
        "ratios": {f"{run}/{peer}": round(medians[run] / medians[peer], 2)
                   for run in ("worker", "in_process") for peer in peers},
    }


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
        from kbflow.sources.objects import open_filesystem

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
        os.environ["KB_BENCH_S3_ENDPOINT"] = endpoint
        whole = whole_processes(config_path, count, {
            "list": ([sys.executable, "-c", LIST_PROCESS, f"{BUCKET}/{prefix}"], lambda out: out.split()[-1] == str(count)),
        }, repeats)
        return {
            "whole_processes": whole,
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
            psql_url = url.replace("+psycopg", "")
            results[mode]["whole_processes"] = whole_processes(config_path, count, {
                "keys": ([sys.executable, "-c", KEYS_PROCESS], lambda out: out.split()[-1] == str(count)),
                "psql": ([str(server.bin_dir / "psql"), psql_url, "-At", "-c", "SELECT id FROM tickets"],
                         lambda out: len(out.split()) == count),
            }, repeats)
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
