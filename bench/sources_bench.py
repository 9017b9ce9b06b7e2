"""Sources: what a no-change `ingest` costs against the bare cost of finding out nothing changed.

    python bench/sources_bench.py [--parts objects] [--objects 10000] [--repeats 3] [--out FILE]

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

BUCKET = "bench-sources"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


def timed(action):
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


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
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import kbflow.flows.ingest  # noqa: F401  - imported before its loader is replaced
    import kbflow.models
    from fakes import HashEmbedder

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
        from kbflow.config import load_config
        from kbflow.flows.ingest import ingest
        from kbflow.store import Store
        from kbflow.tasks.object_source import open_filesystem

        first, first_s = timed(lambda: ingest(config_path=str(config_path)))
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
            report, seconds = timed(lambda: ingest(config_path=str(config_path)))
            assert report["status"] == "no_change" and report["documents"]["unchanged"] == count, report
            ingest_s.append(seconds)
            record = Store(load_config(config_path).store).run(report["run_id"])
            stages.append({"in_flow_s": round(record["duration_s"], 3), **json.loads(record["stage_durations"])})
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="objects", help="comma-separated: objects")
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = {}
    if "objects" in args.parts.split(","):
        results["objects"] = bench_objects(args.objects, args.repeats)
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
