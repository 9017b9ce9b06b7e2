"""The bundled example corpus through the real packaged model (all-MiniLM-L6-v2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lancedb
import numpy as np
import pytest

from kbflow.config import load_config
from kbflow.flows.ingest import ingest
from kbflow.models import resolve_model_path
from kbflow.search import search

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.model]
EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.fixture(scope="module")
def example_store(tmp_path_factory, prefect_harness) -> Path:
    """The example corpus copied to a temp dir and ingested once with the real model."""
    root = tmp_path_factory.mktemp("examples")
    for name in ("docs", "records", "kbflow.toml", "qa.jsonl"):
        source = EXAMPLES / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, root / name)
    report = ingest(config_path=str(root / "kbflow.toml"))
    (root / "first_report.json").write_text(json.dumps(report))
    return root


def test_example_corpus_ingests_with_the_broken_file_quarantined(example_store):
    report = json.loads((example_store / "first_report.json").read_text())
    assert report["status"] == "published"
    assert report["documents"]["quarantined"] == 1
    db = lancedb.connect(load_config(example_store / "kbflow.toml").store.uri)
    (bad,) = db.open_table("quarantine").to_arrow().to_pylist()
    assert bad["uri"] == "releases/release-notes-2.9.pdf" and bad["stage"] == "parse"
    chunks = db.open_table("chunks").to_arrow()
    assert set(chunks.column("model").to_pylist()) == {"all-MiniLM-L6-v2"}
    assert max(chunks.column("n_tokens").to_pylist()) <= 256  # the model's max sequence length
    formats = {uri.rsplit(".", 1)[-1].split("#")[0] for uri in chunks.column("uri").to_pylist()}
    assert {"md", "txt", "rst", "html", "pdf", "docx", "jsonl"} <= formats


def test_stored_vectors_are_the_models_own_embeddings(example_store):
    from sentence_transformers import SentenceTransformer

    db = lancedb.connect(load_config(example_store / "kbflow.toml").store.uri)
    sample = db.open_table("chunks").to_arrow().slice(0, 16).to_pylist()
    raw = SentenceTransformer(resolve_model_path("all-MiniLM-L6-v2"), device="cpu").encode(
        [row["text"] for row in sample], normalize_embeddings=True
    )
    stored = np.array([row["vector"] for row in sample])
    np.testing.assert_allclose((stored * raw).sum(axis=1), 1.0, atol=1e-4)


def test_labeled_questions_find_their_documents(example_store):
    qa = [json.loads(line) for line in (example_store / "qa.jsonl").read_text().splitlines()]
    results = search(load_config(example_store / "kbflow.toml"), [q["question"] for q in qa], k=5)
    hit_at_5 = np.mean([any(hit["uri"] in q["relevant"] for hit in hits) for q, hits in zip(qa, results)])
    assert hit_at_5 >= 0.7, f"hit@5 = {hit_at_5:.2f} on {len(qa)} labeled questions"


def test_html_scripts_never_reach_the_index(example_store):
    config = load_config(example_store / "kbflow.toml")
    # The control: the page that holds the scripts is indexed, and its visible text is found by the same mode.
    visible = search(config, ["Markdown shortcuts editor"], k=20, mode="fts")[0]
    assert any(hit["uri"].endswith("editor-faq.html") and "Markdown" in hit["text"] for hit in visible)
    hits = search(config, ["0xDEADBEEF port 31337"], k=20, mode="fts")[0]
    assert all("DEADBEEF" not in hit["text"] and "31337" not in hit["text"] for hit in hits)


def test_second_run_is_a_no_op_with_the_real_model(example_store):
    report = ingest(config_path=str(example_store / "kbflow.toml"))
    assert report["status"] == "no_change" and report["chunks"]["embedded"] == 0
