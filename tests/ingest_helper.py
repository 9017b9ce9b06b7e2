"""Run an ingest in its own process with the test embedder, to crash it or race it.

    python ingest_helper.py CONFIG MARKER during-embedding|after-chunks-commit|slow-embedding

`during-embedding`: the embedder writes MARKER and hangs on its first batch, and
the test kills the process. `after-chunks-commit`: the process exits hard right
after the chunks commit, before the documents commit. `slow-embedding`: a normal
ingest whose embedder takes a second per batch, so two of them overlap; the
report is written to MARKER as JSON.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fakes import HashEmbedder  # noqa: E402

config_path, marker, crash_point = sys.argv[1], Path(sys.argv[2]), sys.argv[3]


class SlowEmbedder(HashEmbedder):
    def encode(self, texts):
        time.sleep(1)
        return super().encode(texts)


class HangingEmbedder(HashEmbedder):
    def encode(self, texts):
        marker.write_text("embedding")
        time.sleep(600)  # killed by the test long before this returns
        return super().encode(texts)


import kbflow.flows.ingest  # noqa: E402
from kbflow.resources import provided_embedder  # noqa: E402
from kbflow.store import CHUNKS, Store  # noqa: E402

# Named after the configured model, as the test embedders of conftest.hash_embedder are.
if crash_point == "during-embedding":
    embedder = HangingEmbedder
elif crash_point == "slow-embedding":
    embedder = SlowEmbedder
else:
    embedder = HashEmbedder
    commit = Store._commit

    def commit_then_die(self, name, rows, doc_ids, relabelled=None):
        result = commit(self, name, rows, doc_ids, relabelled)
        if name == CHUNKS:
            marker.write_text("chunks committed")
            os._exit(9)
        return result

    Store._commit = commit_then_die

with provided_embedder(lambda config: embedder(name=config.model)):
    report = kbflow.flows.ingest.ingest(config_path=config_path)
if crash_point == "slow-embedding":
    import json

    marker.write_text(json.dumps(report))
