"""Blue-green model switch: reindex builds, checks, then switches; rollback returns."""

from __future__ import annotations

import hashlib
import json
import shutil

import lancedb
import numpy as np
import pytest
from typer.testing import CliRunner

from kbflow.cli import app
from kbflow.config import load_config
from kbflow.errors import ModelMismatch, PromotionRefused, QualityGateFailed
from kbflow.flows.ingest import ingest
from kbflow.flows.reindex import reindex
from kbflow.flows.rollback import rollback
from kbflow.runs import decoded_run
from kbflow.search import search
from kbflow.store import Store
from kbflow.tasks.quality.suites import bundled_expectations_dir

from conftest import write
from fakes import HashEmbedder

pytestmark = pytest.mark.usefixtures("prefect_harness")


def index_models(config_path) -> dict[str, int]:
    """{model name: vector dimension} of the chunks table."""
    table = lancedb.connect(load_config(config_path).store.uri).open_table("chunks")
    models = set(table.to_arrow().column("model").to_pylist())
    return {model: table.schema.field("vector").type.list_size for model in models}


def configure_model(config_path, name: str) -> None:
    text = config_path.read_text()
    config_path.write_text(text.replace("[store]", f'[embedding]\nmodel = "{name}"\n\n[store]', 1))


def test_reindex_switches_models_without_mixing_and_rollback_returns(small_corpus, hash_embedder):
    first = ingest(config_path=str(small_corpus))
    assert index_models(small_corpus) == {"all-MiniLM-L6-v2": 32}

    hash_embedder.registry["model-b"] = HashEmbedder(name="model-b", dim=16)
    configure_model(small_corpus, "model-b")
    config = load_config(small_corpus)
    with pytest.raises(ModelMismatch):
        search(config, ["nightly backups"])
    with pytest.raises(ModelMismatch):
        ingest(config_path=str(small_corpus))

    report = reindex(config_path=str(small_corpus))
    assert report["status"] == "published" and report["chunks"]["embedded"] == report["chunks"]["total"]
    assert index_models(small_corpus) == {"model-b": 16}
    assert search(config, ["nightly backups"], k=1)[0][0]["uri"] == "backup.md"
    assert ingest(config_path=str(small_corpus))["status"] == "no_change"
    assert not (small_corpus.parent / ".kbflow" / "staging").exists()

    rollback(config_path=str(small_corpus), to_run=first["run_id"])
    assert index_models(small_corpus) == {"all-MiniLM-L6-v2": 32}
    with pytest.raises(ModelMismatch):
        search(config, ["nightly backups"])  # the config still names model-b
    small_corpus.write_text(small_corpus.read_text().replace('model = "model-b"', ""))
    assert search(load_config(small_corpus), ["nightly backups"], k=1)[0][0]["uri"] == "backup.md"


def test_a_reindex_keeps_what_its_staging_run_set_aside(small_corpus, hash_embedder):
    write(small_corpus.parent, {"docs/stub.txt": "tiny"})  # too short: quarantined by the documents suite
    assert ingest(config_path=str(small_corpus))["documents"]["quarantined"] == 1
    hash_embedder.registry["model-b"] = HashEmbedder(name="model-b", dim=16)
    configure_model(small_corpus, "model-b")
    report = reindex(config_path=str(small_corpus))
    assert report["status"] == "published" and report["documents"]["quarantined"] == 1
    store = Store(load_config(small_corpus).store)
    assert [(r["uri"], r["stage"]) for r in store.quarantine(report["run_id"])] == [("stub.txt", "quality:documents")]
    recorded = store.run(report["run_id"])
    assert json.loads(recorded["documents"])["quarantined"] == 1
    assert recorded["dq_success"] is False and recorded["quality_results"]  # the staging run's checks, kept


def test_a_reindex_that_fails_its_checks_leaves_the_index_alone(small_corpus, hash_embedder):
    write(small_corpus.parent, {"docs/stub.txt": "tiny"})
    ingest(config_path=str(small_corpus))
    table = lancedb.connect(load_config(small_corpus).store.uri).open_table("chunks")
    version = table.version
    checks = small_corpus.parent / "checks"
    shutil.copytree(bundled_expectations_dir(), checks, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    suite = json.loads((checks / "embeddings.json").read_text())
    suite["expectations"].append({"type": "expect_table_row_count_to_be_between", "kwargs": {"max_value": 1},
                                  "meta": {"on_failure": "block"}})
    (checks / "embeddings.json").write_text(json.dumps(suite))
    with small_corpus.open("a") as handle:
        handle.write('\n[quality]\nexpectations_dir = "checks"\n')
    hash_embedder.registry["model-b"] = HashEmbedder(name="model-b", dim=16)
    configure_model(small_corpus, "model-b")
    with pytest.raises(QualityGateFailed) as blocked:
        reindex(config_path=str(small_corpus))
    table.checkout_latest()
    assert table.version == version and index_models(small_corpus) == {"all-MiniLM-L6-v2": 32}
    # The blocked reindex is recorded with what its staging run set aside and the index's totals.
    report, store = blocked.value.report, Store(load_config(small_corpus).store)
    assert report["status"] == "blocked" and report["documents"]["quarantined"] == 1
    assert report["documents"]["new"] == 3 and report["chunks"]["total"] == table.count_rows() > 0
    assert [r["uri"] for r in store.quarantine(report["run_id"])] == ["stub.txt"]


@pytest.mark.model
def test_reindex_with_a_local_copy_of_the_real_model(small_corpus, tmp_path):
    from sentence_transformers import SentenceTransformer

    from kbflow.models import resolve_model_path

    ingest(config_path=str(small_corpus))  # the packaged model
    copy = tmp_path / "minilm-copy"
    SentenceTransformer(resolve_model_path("all-MiniLM-L6-v2"), device="cpu").save(str(copy))
    configure_model(small_corpus, str(copy))
    with pytest.raises(ModelMismatch, match="kbflow reindex"):
        search(load_config(small_corpus), ["port"])
    reindex(config_path=str(small_corpus))
    assert index_models(small_corpus) == {str(copy): 384}
    hits = search(load_config(small_corpus), ["Which port does the server listen on?"], k=1)[0]
    assert hits[0]["uri"] == "install.md"


class NoSignalEmbedder(HashEmbedder):
    """A model that learned nothing: each text a pseudo-random unit vector of its own."""

    def encode(self, texts):
        rows = [np.random.default_rng(int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little"))
                .standard_normal(self.dim) for t in texts]
        return np.asarray([r / np.linalg.norm(r) for r in rows], dtype=np.float32)


QUERIES = [
    {"query": "When do nightly backups run and how many snapshots are kept?", "relevant": ["backup.md"]},
    {"query": "How do I restore a snapshot with lumen restore?", "relevant": ["backup.md"]},
    {"query": "Which port does the server listen on by default?", "relevant": ["install.md"]},
    {"query": "Where are notes stored in plain files?", "relevant": ["install.md"]},
    {"query": "When are invoices emailed and how long do refunds take?", "relevant": ["billing.txt"]},
]


def with_queries(config_path, model: str) -> None:
    (config_path.parent / "qa.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUERIES))
    text = config_path.read_text()
    config_path.write_text(text.replace("[store]", f'[embedding]\nmodel = "{model}"\n\n[evaluation]\nqueries = "qa.jsonl"'
                                        '\n\n[search]\nmode = "vector"\n\n[store]', 1))


def test_reindex_refuses_a_model_that_scores_worse_on_the_configured_queries(small_corpus, hash_embedder):
    ingest(config_path=str(small_corpus))
    store = Store(load_config(small_corpus).store)
    # positive control: a model as good as the current one is promoted, with its numbers recorded
    hash_embedder.registry["model-b"] = HashEmbedder(name="model-b", dim=32)
    with_queries(small_corpus, "model-b")
    promoted = reindex(config_path=str(small_corpus))
    assert promoted["status"] == "published" and promoted["promotion"]["decision"] == "promoted"
    assert promoted["promotion"]["before"] == promoted["promotion"]["after"] >= 0.8
    assert promoted["promotion"]["n"] == len(QUERIES)
    assert index_models(small_corpus) == {"model-b": 32}

    hash_embedder.registry["model-worse"] = NoSignalEmbedder(name="model-worse", dim=16)
    small_corpus.write_text(small_corpus.read_text().replace('model = "model-b"', 'model = "model-worse"'))
    with pytest.raises(PromotionRefused, match="refused: MRR@10"):
        reindex(config_path=str(small_corpus))
    assert index_models(small_corpus) == {"model-b": 32}  # not switched
    assert not (small_corpus.parent / ".kbflow" / "staging").exists()
    refused = decoded_run(store.runs(limit=1)[0])
    assert refused["status"] == "refused" and refused["promotion"]["decision"] == "refused"
    assert refused["promotion"]["after"] < refused["promotion"]["before"] - 0.005
    assert refused["promotion"]["model_before"] == "model-b" and refused["promotion"]["model_after"] == "model-worse"
    shown = CliRunner().invoke(app, ["runs", "--config", str(small_corpus)])
    assert shown.exit_code == 0 and f"{refused['run_id']} reindex refused: MRR@10" in shown.stdout

    anyway = reindex(config_path=str(small_corpus), allow_worse=True)
    assert anyway["status"] == "published" and anyway["promotion"]["decision"] == "promoted_anyway"
    assert index_models(small_corpus) == {"model-worse": 16}
