"""Edit → searchable with `kbflow watch` running, first edit included (issue 26 #10).

    python bench/watch_bench.py [--edits 3]

A copy of examples/ in a temporary folder, ingested once; then a whole `kbflow watch` process
(as a user starts it, its own temporary Prefect server, KBFLOW_NO_SERVER=1 so no service is
involved). After it reports its catch-up run, each edit appends a sentence with a unique word
to a page, and the time until that word is in the chunks table (polled here with lancedb every
0.2 s) is one sample. Goal: ≤ 15 s for every edit, the first one included.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KBFLOW = str(Path(sys.executable).parent / "kbflow")


def searchable(store: Path, word: str) -> bool:
    import lancedb

    try:
        table = lancedb.connect(str(store)).open_table("chunks")
        return table.count_rows(f"text LIKE '%{word}%'") > 0
    except Exception:  # noqa: BLE001 - mid-commit: try again
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edits", type=int, default=3)
    options = parser.parse_args()
    env = {**os.environ, "KBFLOW_NO_SERVER": "1", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    env.pop("PREFECT_API_URL", None)
    with tempfile.TemporaryDirectory(prefix="kbflow-watch-") as tmp:
        examples = Path(tmp) / "examples"
        shutil.copytree(ROOT / "examples", examples, ignore=shutil.ignore_patterns(".kbflow"))
        subprocess.run([KBFLOW, "ingest", "--json"], cwd=examples, env=env, check=True, capture_output=True)
        watcher = subprocess.Popen([KBFLOW, "watch", "--json"], cwd=examples, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True)
        try:
            started = time.perf_counter()
            watcher.stdout.readline()  # the catch-up run's report
            print(f"watch started and caught up in {time.perf_counter() - started:.1f} s "
                  f"(load {os.getloadavg()[0]:.1f})", file=sys.stderr)
            page = examples / "docs" / "manual" / "backup-and-restore.md"
            for i in range(options.edits):
                word = f"zebrafinch{i}x{int(time.time())}"
                edited = time.perf_counter()
                page.write_text(page.read_text(encoding="utf-8") + f"\n\nA note on {word} retention.\n",
                                encoding="utf-8")
                while not searchable(examples / ".kbflow", word):
                    time.sleep(0.2)
                    if time.perf_counter() - edited > 300:
                        raise SystemExit(f"edit {i + 1} not searchable after 300 s")
                print(f"edit {i + 1}: searchable after {time.perf_counter() - edited:.1f} s "
                      f"(load {os.getloadavg()[0]:.1f})", flush=True)
                watcher.stdout.readline()  # its run's report
        finally:
            watcher.terminate()
            watcher.wait(60)


if __name__ == "__main__":
    main()
