"""Fine-tune tasks: which columns train, what the scoring corpus is, hand-computed metrics."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kbflow.config import FinetuneConfig
from kbflow.tasks.evaluation.finetune import (
    check_out_dir,
    publish_model,
    read_pairs,
    retrieval_set,
    score_embedder,
    staging_dir,
    training_arguments,
    train_embedder,
    training_columns,
    write_lineage,
)


def pairs(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows)


def row(anchor, positive, chunk, *negatives):
    return {"anchor": anchor, "positive": positive, **{f"negative_{i}": n for i, n in enumerate(negatives, 1)},
            "query_id": f"q-{anchor}", "positive_chunk_id": chunk, "doc_id": "d", "source": "docs",
            "generator": "heading"}


class TableEmbedder:
    """Vectors given per text, normalised: rankings are whatever the test says."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = {text: np.asarray(v, np.float32) / np.linalg.norm(v) for text, v in vectors.items()}
        self.dim = len(next(iter(vectors.values())))
        self.name = "table"

    def encode(self, texts):
        return np.stack([self.vectors[text] for text in texts])


def test_training_columns_keep_negatives_only_while_every_row_has_one():
    full = pairs([row("a", "p", "c1", "n1", "n2"), row("b", "q", "c2", "m1", "m2")])
    assert training_columns(full) == ["anchor", "positive", "negative_1", "negative_2"]
    gap = pairs([row("a", "p", "c1", "n1", "n2"), row("b", "q", "c2", "m1", None)])
    assert training_columns(gap) == ["anchor", "positive", "negative_1"]
    empty = pairs([row("a", "p", "c1", "", "n2")])
    assert training_columns(empty) == ["anchor", "positive"]
    assert training_columns(pairs([row("a", "p", "c1")])) == ["anchor", "positive"]  # no lineage columns


def test_retrieval_set_is_the_test_anchors_over_the_test_passages_and_negatives():
    splits = {
        "train": pairs([row("ta", "train only", "c1", "train neg")]),
        "test": pairs([row("qa", "shared text", "c3", "neg only"), row("qb", "shared text", "c4", "qc passage"),
                       row("qc", "qc passage", "c5", "shared text")]),
    }
    retrieval = retrieval_set(splits)
    assert retrieval.queries == ["qa", "qb", "qc"] and retrieval.relevant == ["c3", "c4", "c5"]
    assert sorted(retrieval.corpus) == ["neg only", "qc passage", "shared text"]  # no train passages
    ids = dict(zip(retrieval.corpus, retrieval.corpus_ids))
    assert ids["shared text"] == {"c3", "c4"}  # one text, two chunks: relevant to both queries
    assert ids["neg only"] == frozenset()  # relevant to nobody
    assert ids["qc passage"] == {"c5"}  # a negative that is another row's positive keeps its chunk
    everything = retrieval_set(splits, corpus_splits=("train", "test"))
    assert sorted(everything.corpus) == ["neg only", "qc passage", "shared text", "train neg", "train only"]
    with pytest.raises(ValueError, match="no test rows"):
        retrieval_set({"train": splits["train"]})


def test_score_embedder_matches_hand_computed_metrics():
    splits = {
        "train": pairs([row("t", "p1", "c1", "n1")]),
        "test": pairs([row("q1", "p1", "c1", "n1"), row("q2", "p2", "c2", "n1")]),
    }
    embedder = TableEmbedder({
        "p1": [1, 0, 0], "p2": [0, 1, 0], "n1": [0, 0, 1],
        "q1": [1, 0.1, 0.05],  # p1 first: rank 1
        "q2": [0, 0.5, 1],  # n1 first, then p2: rank 2
    })
    metrics = score_embedder(embedder, retrieval_set(splits))
    assert metrics["n"] == 2
    assert metrics["hit@1"] == 0.5 and metrics["hit@5"] == 1.0 and metrics["hit@10"] == 1.0
    assert metrics["mrr@10"] == pytest.approx((1 + 1 / 2) / 2)
    assert metrics["ndcg@10"] == pytest.approx((1 + 1 / np.log2(3)) / 2, abs=1e-6)


def test_read_pairs_reads_the_splits_and_refuses_other_datasets(tmp_path):
    data = tmp_path / "embedding-pairs" / "data"
    data.mkdir(parents=True)
    pq.write_table(pairs([row("a", "p", "c1", "n")]), data / "train-00000-of-00001.parquet")
    pq.write_table(pairs([row("b", "q", "c2", "n")]), data / "test-00000-of-00001.parquet")
    splits = read_pairs(tmp_path / "embedding-pairs")
    assert sorted(splits) == ["test", "train"] and splits["test"].column("anchor").to_pylist() == ["b"]
    with pytest.raises(FileNotFoundError, match="kbflow dataset build"):
        read_pairs(tmp_path / "nothing-here")
    pq.write_table(pa.table({"query": ["x"], "passage": ["y"]}), data / "train-00000-of-00001.parquet")
    with pytest.raises(ValueError, match="not an embedding-pairs dataset"):
        read_pairs(tmp_path / "embedding-pairs")


def test_the_model_folder_appears_whole_and_never_replaces_a_used_one(tmp_path):
    out = tmp_path / "models" / "tuned"
    staged = staging_dir(out)
    assert staged.parent == out.parent and not out.exists()
    (staged / "model.safetensors").write_text("weights")
    (staged / "README.md").write_text("# card\n")
    write_lineage(staged, {"base_model": "all-MiniLM-L6-v2", "dataset": "/d/embedding-pairs", "config_hash": "abc",
                           "index": {"chunks_version": 7}, "steps": 3, "train_rows": 12,
                           "base_metrics": {"hit@1": 0.5}, "tuned_metrics": {"hit@1": 0.75}})
    publish_model(staged, out)
    assert not staged.exists() and (out / "model.safetensors").read_text() == "weights"
    card = (out / "README.md").read_text()
    assert card.startswith("# card") and "## kbflow lineage" in card and "chunks version 7" in card
    assert "| hit@1 | 0.5 | 0.75 |" in card
    assert json.loads((out / "kbflow_finetune.json").read_text())["config_hash"] == "abc"
    with pytest.raises(FileExistsError, match="choose a new --out"):
        check_out_dir(out)
    empty = tmp_path / "empty"
    empty.mkdir()
    check_out_dir(empty)  # an empty folder is fine


def test_training_uses_the_configured_seed_and_settings(tmp_path):
    """Issue 15 #18: the trainer's seed was hard-coded to 42 whatever the config said."""
    settings = FinetuneConfig(seed=7, batch_size=8, max_steps=5)
    args = training_arguments(settings, tmp_path, use_cpu=True)
    assert (args.seed, args.per_device_train_batch_size, args.max_steps) == (7, 8, 5)
    assert training_arguments(FinetuneConfig(), tmp_path, use_cpu=True, epochs=2).num_train_epochs == 2


def test_training_at_a_shorter_length_truncates_while_training_and_saves_the_base_length(tmp_path):
    """`[finetune] max_seq_length` makes CPU steps cheaper; the tuned model must still embed at the base's length."""
    from kbflow.config import DEFAULT_MODEL
    from kbflow.models import resolve_model_path
    from kbflow.tasks.evaluation.finetune import load_model

    model = load_model(resolve_model_path(DEFAULT_MODEL), "cpu")
    base_length = model.max_seq_length
    seen: list[int] = []
    preprocess = model.preprocess  # what the trainer's data collator tokenizes each batch with

    def recording(texts, *args, **kwargs):
        features = preprocess(texts, *args, **kwargs)
        seen.append(int(features["input_ids"].shape[1]))
        return features

    model.preprocess = recording
    long_text = " ".join(f"word{i} of a long passage" for i in range(200))  # far beyond 32 tokens
    train = pairs([{"anchor": f"question {i} about {long_text}", "positive": f"{i} {long_text}"} for i in range(4)])
    trained = train_embedder(model, train, None, FinetuneConfig(batch_size=2, max_steps=1, max_seq_length=32),
                             tmp_path / "trainer")

    assert trained.steps == 1
    assert seen and max(seen) == 32  # every text truncated to the training length
    assert model.max_seq_length == base_length == 256
