"""Run an ingest that dies at a chosen point, like a machine losing power.

    python crash_helper.py CONFIG MARKER during-embedding|after-chunks-commit

`during-embedding`: the embedder writes MARKER and hangs on its first batch, and
the test kills the process. `after-chunks-commit`: the process exits hard right
after the chunks commit, before the manifest commit.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fakes import HashEmbedder  # noqa: E402

config_path, marker, crash_point = sys.argv[1], Path(sys.argv[2]), sys.argv[3]


class HangingEmbedder(HashEmbedder):
    def encode(self, texts):
        marker.write_text("embedding")
        time.sleep(600)  # killed by the test long before this returns
        return super().encode(texts)


import flows.ingest  # noqa: E402
from kbflow.store import CHUNKS, Store  # noqa: E402

if crash_point == "during-embedding":
    flows.ingest.load_embedder = lambda config: HangingEmbedder()
else:
    flows.ingest.load_embedder = lambda config: HashEmbedder()
    commit = Store._commit

    def commit_then_die(self, name, rows, doc_ids, run_id):
        result = commit(self, name, rows, doc_ids, run_id)
        if name == CHUNKS:
            marker.write_text("chunks committed")
            os._exit(9)
        return result

    Store._commit = commit_then_die

flows.ingest.ingest(config_path=config_path)
