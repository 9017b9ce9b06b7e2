"""The fine-tuning loop on small data: finetune a few steps, load the model, switch the index to it."""

from __future__ import annotations

import json
from pathlib import Path

import lancedb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kbflow.config import EmbeddingConfig, load_config
from kbflow.flows.finetune import finetune
from kbflow.flows.ingest import ingest
from kbflow.flows.reindex import reindex
from kbflow.schemas import embedding_pairs_schema
from kbflow.search import search

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.model]

# (anchor, positive, chunk id, doc id); hard negatives are other rows' positives.
PAIRS = [
    ("Which port does the server listen on?", "The server listens on port 8420 by default.", "c-port", "install"),
    ("Where are notes stored?", "Notes are stored under /var/lib/lumen in plain files.", "c-storage", "install"),
    ("Which systems does Lumen run on?", "Lumen Notes runs on Linux and macOS.", "c-systems", "install"),
    ("When do backups run?", "Nightly backups run at 02:00 and keep fourteen snapshots.", "c-backup", "backup"),
    ("How do I restore a snapshot?", "Restore a snapshot with lumen restore while the server is stopped.", "c-restore", "backup"),
    ("When are invoices sent?", "Invoices are emailed on the first day of each month.", "c-invoices", "billing"),
    ("How long do refunds take?", "Refunds take five business days.", "c-refunds", "billing"),
    ("How often do clients sync?", "Clients sync every ten seconds.", "c-sync", "sync"),
    ("When is support open?", "Support is open on weekdays from nine to five.", "c-support", "support"),
    ("How do I change the port?", "Change the port with the --port flag.", "c-port-flag", "install"),
]
SPLIT_OF = {"install": "train", "billing": "train", "sync": "train", "backup": "validation", "support": "test"}


def write_embedding_pairs(root: Path) -> Path:
    """A small embedding-pairs dataset in the layout `kbflow dataset build` writes."""
    dataset = root / "datasets" / "embedding-pairs"
    (dataset / "data").mkdir(parents=True)
    positives = [positive for _, positive, _, _ in PAIRS]
    rows: dict[str, list[dict]] = {split: [] for split in ("train", "validation", "test")}
    for number, (anchor, positive, chunk, doc) in enumerate(PAIRS):
        negatives = [positives[(number + step) % len(positives)] for step in (1, 2)]
        rows[SPLIT_OF[doc]].append({
            "anchor": anchor, "positive": positive, "negative_1": negatives[0], "negative_2": negatives[1],
            "query_id": f"q{number}", "positive_chunk_id": chunk, "doc_id": doc, "source": "docs",
            "generator": "llm",
        })
    for split, split_rows in rows.items():
        table = pa.Table.from_pylist(split_rows, schema=embedding_pairs_schema(2))
        pq.write_table(table, dataset / "data" / f"{split}-00000-of-00001.parquet")
    (dataset / "manifest.json").write_text(json.dumps({
        "kind": "embedding-pairs", "config_hash": "test-hash", "created_at": "2026-01-01T00:00:00Z",
        "index": {"chunks_version": 3, "documents_version": 3, "model": "all-MiniLM-L6-v2", "run_ids": []},
    }))
    return dataset


def test_finetune_then_reindex_switches_the_index_to_the_tuned_model(small_corpus, tmp_path):
    from sentence_transformers import SentenceTransformer

    from kbflow.models import load_embedder

    with small_corpus.open("a") as handle:
        handle.write("\n[finetune]\nbatch_size = 4\n")
    ingest(config_path=str(small_corpus))
    dataset = write_embedding_pairs(tmp_path)
    out = tmp_path / "models" / "tuned"

    report = finetune(config_path=str(small_corpus), dataset=str(dataset), out=str(out), max_steps=2)

    assert report["steps"] == 2 and report["train_rows"] == 7 and report["model_dir"] == str(out)
    assert report["dataset"] == str(dataset) and report["minutes"] >= 0
    assert report["validation_loss"] is not None and report["train_loss"] is not None
    for metrics in (report["base"], report["tuned"]):
        assert metrics["n"] == 1 and set(metrics) >= {"hit@1", "hit@5", "hit@10", "mrr@10", "ndcg@10"}
    assert report["base"]["hit@1"] == 1.0  # "When is support open?" is easy for MiniLM already
    assert [p.name for p in out.parent.iterdir()] == ["tuned"]  # no staging folder left behind
    card = (out / "README.md").read_text()
    assert "## kbflow lineage" in card and "test-hash" in card and "chunks version 3" in card

    model = SentenceTransformer(str(out), device="cpu")
    assert model.get_embedding_dimension() == 384
    embedder = load_embedder(EmbeddingConfig(model=str(out)))
    assert embedder.encode(["a question"]).shape == (1, 384)

    small_corpus.write_text(small_corpus.read_text().replace("[store]", f'[embedding]\nmodel = "{out}"\n\n[store]', 1))
    switched = reindex(config_path=str(small_corpus))
    assert switched["status"] == "published" and switched["model"] == str(out)
    chunks = lancedb.connect(load_config(small_corpus).store.uri).open_table("chunks").to_arrow()
    assert set(chunks.column("model").to_pylist()) == {str(out)}
    hits = search(load_config(small_corpus), ["Which port does the server listen on?"], k=1)[0]
    assert hits[0]["uri"] == "install.md"


def test_finetune_refuses_a_used_model_folder_before_training(small_corpus, tmp_path):
    dataset = write_embedding_pairs(tmp_path)
    out = tmp_path / "in-use"
    out.mkdir()
    (out / "model.safetensors").write_text("the model the index uses")
    with pytest.raises(FileExistsError):
        finetune(config_path=str(small_corpus), dataset=str(dataset), out=str(out), max_steps=1)
    assert (out / "model.safetensors").read_text() == "the model the index uses"
