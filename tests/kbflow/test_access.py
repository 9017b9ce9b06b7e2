"""Per-document ACLs in search (kbflow.access): a prefilter inside LanceDB in every mode, fail closed.

The stores here are real LanceDB tables written through `Store.publish`, with vectors of the
small test embedder (tests/fakes.py) so that a query and a document with the same text are
the nearest pair; the exact-search property test uses synthetic random vectors.
"""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from kbflow.access import acl_counts, missing_acl_warning, reader_principals, visible_rows
from kbflow.config import AccessConfig, ConfigError, EmbeddingConfig, KbflowConfig, StoreConfig
from kbflow.resources import Resources
from kbflow.schemas import ACL, DOCUMENTS, chunks_schema
from kbflow.search import fts_hits, search, vector_hits
from kbflow.sources.acl import BadAcl, acl_from_rules, acl_from_value
from kbflow.store import RowFilter, Store, new_run_id
from kbflow.tasks.index.embed import vector_column

from fakes import HashEmbedder

MODES = ("vector", "fts", "hybrid")
SECRET = "quarterly salary bands for the handbook review committee zebra"
SECRET_ID = "hr-salaries"
HIDDEN = "orphan handbook page without owner zebra"  # no ACL: fail closed
TOPICS = ["deploy", "backup", "billing", "search", "login", "export", "upload", "alerts", "cache", "tokens", "mail",
          "proxy"]


def chunk_table(rows: list[dict], embedder: HashEmbedder, model: str) -> pa.Table:
    """`chunks` rows (one chunk per document) with the embedder's vectors."""
    schema = chunks_schema(embedder.dim)
    run_id = new_run_id()
    full = [{"chunk_id": f"{r['doc_id']}#0", "source": "s", "uri": f"{r['doc_id']}.md", "tenant": "main",
             "ordinal": 0, "heading": "", "text_hash": r["doc_id"], "n_tokens": 5, "metadata": "{}",
             "model": model, "run_id": run_id, **r} for r in rows]
    table = pa.Table.from_pylist([{k: v for k, v in r.items() if k != "vector"} for r in full],
                                 schema=schema.remove(schema.get_field_index("vector")))
    vectors = embedder.encode([r["text"] for r in full])
    return table.append_column("vector", vector_column(vectors, embedder.dim)).select(schema.names).cast(schema)


def document_table(chunks: pa.Table) -> pa.Table:
    rows = [{"doc_id": c["doc_id"], "source": "s", "tenant": c["tenant"], "uri": c["uri"], "content_hash": c["doc_id"],
             "status": "active", "n_chunks": 1, "acl": c["acl"]} for c in chunks.to_pylist()]
    return pa.Table.from_pylist(rows, schema=DOCUMENTS)


def corpus() -> list[dict]:
    """A secret HR page, 12 public pages and, closer to the secret than any public page, 12 pages
    of another group (a post-filter would lose them from a top 10); one page without an ACL, one
    public page of another tenant."""
    rows = [{"doc_id": SECRET_ID, "text": SECRET, "acl": ["group:hr", "user:carol"]}]
    rows += [{"doc_id": f"public-{t}", "text": f"handbook chapter about {t} settings", "acl": ["public"]}
             for t in TOPICS]
    rows += [{"doc_id": f"finance-{i}", "text": f"quarterly salary bands handbook review {TOPICS[i]}",
              "acl": ["group:finance"]} for i in range(12)]
    rows += [{"doc_id": "no-acl", "text": HIDDEN, "acl": None},
             {"doc_id": "other-tenant", "text": "salary review committee zebra of another tenant", "acl": ["public"],
              "tenant": "other"}]
    return rows


@pytest.fixture
def acl_index(tmp_path, hash_embedder):
    config = KbflowConfig(store=StoreConfig(uri=str(tmp_path / "db")), access=AccessConfig(mode="enforce"))
    store = Store(config.store)
    chunks = chunk_table(corpus(), hash_embedder, config.embedding.model)
    store.publish(new_run_id(), chunks, document_table(chunks), [])
    return config


def found(config: KbflowConfig, query: str, mode: str, principals=None, tenant=None, k=10) -> list[dict]:
    return search(config, [query], k=k, mode=mode, principals=principals, tenant=tenant)[0]


class ExactTextReranker:
    """A cross-encoder stand-in that puts the secret first whenever it is among the candidates:
    if the ACL were applied after this stage (or not at all) the outsider would see it on top."""

    def predict(self, pairs, show_progress_bar=False):
        return [10.0 if passage == SECRET else 1.0 / (1 + i) for i, (_, passage) in enumerate(pairs)]


@pytest.fixture(params=[False, True], ids=["no-rerank", "rerank"])
def rerank(request, acl_index, monkeypatch):
    if request.param:
        import kbflow.rerank

        acl_index.search.rerank_model = "exact-text"
        # kbflow.search imports the loader lazily at each search: this one name is where it comes from
        monkeypatch.setattr(kbflow.rerank, "load_reranker", lambda path: ExactTextReranker())
    return request.param


@pytest.mark.parametrize("mode", MODES)
def test_a_restricted_text_reaches_its_readers_first_and_no_one_else(acl_index, rerank, mode):
    insider = found(acl_index, SECRET, mode, ["group:hr"])
    assert insider[0]["doc_id"] == SECRET_ID and insider[0]["text"] == SECRET  # the positive control
    assert found(acl_index, SECRET, mode, ["user:carol", "group:nobody"])[0]["doc_id"] == SECRET_ID
    for outsider in (["group:sales"], ["user:alice", "group:finance"], None):
        hits = found(acl_index, SECRET, mode, outsider)
        assert hits, (mode, outsider)
        assert all(hit["doc_id"] != SECRET_ID and SECRET not in hit["text"] for hit in hits), (mode, outsider)


@pytest.mark.parametrize("mode", MODES)
def test_k_visible_hits_come_back_however_many_closer_ones_are_hidden(acl_index, mode):
    # 12 finance pages are nearer the query than any public page; a public reader still gets 10 hits
    public = found(acl_index, "quarterly salary bands handbook review", mode, None, tenant="main")
    assert len(public) == 10 and {hit["doc_id"] for hit in public} <= {f"public-{t}" for t in TOPICS}
    finance = found(acl_index, "quarterly salary bands handbook review", mode, ["group:finance"], tenant="main")
    assert sum(hit["doc_id"].startswith("finance-") for hit in finance) == 10


@pytest.mark.parametrize("mode", MODES)
def test_enforce_fails_closed_for_a_document_without_an_acl_and_composes_with_tenants(acl_index, mode):
    off = acl_index.model_copy(update={"access": AccessConfig(mode="off")})
    assert found(off, HIDDEN, mode)[0]["doc_id"] == "no-acl"  # positive control: it is in the index
    for principals in (None, ["group:hr"], ["public"], ["group:finance", "user:carol"]):
        assert all(hit["doc_id"] != "no-acl" for hit in found(acl_index, HIDDEN, mode, principals))
    # a public page of another tenant: found without a tenant, never with tenant "main"
    assert "other-tenant" in {hit["doc_id"] for hit in found(acl_index, SECRET, mode, ["group:sales"])}
    assert "other-tenant" not in {hit["doc_id"] for hit in found(acl_index, SECRET, mode, ["group:hr"], "main")}


def test_asking_with_principals_while_access_is_off_is_an_error_not_a_silent_no_op(acl_index):
    off = acl_index.model_copy(update={"access": AccessConfig(mode="off")})
    with pytest.raises(ConfigError, match="mode = \"enforce\""):
        found(off, SECRET, "fts", ["group:hr"])
    assert visible_rows(off.access) is None and reader_principals(acl_index.access, None) == ("public",)


TRICKS = ["x' OR 1=1 --", "x') OR true OR ('", "%", "'", "group:hr' OR '1'='1", "a\\' OR 1=1", "\"quoted\"",
          "salary OR zebra", "100%"]


@pytest.mark.parametrize("mode", ["vector", "fts"])
def test_principals_holding_sql_or_fts_syntax_match_only_themselves(tmp_path, hash_embedder, mode):
    config = KbflowConfig(store=StoreConfig(uri=str(tmp_path / "db")), access=AccessConfig(mode="enforce"))
    rows = [{"doc_id": f"doc-{i}", "text": f"zebra handbook page {i}", "acl": [trick]} for i, trick in enumerate(TRICKS)]
    rows.append({"doc_id": SECRET_ID, "text": SECRET, "acl": ["group:hr"]})
    chunks = chunk_table(rows, hash_embedder, config.embedding.model)
    Store(config.store).publish(new_run_id(), chunks, document_table(chunks), [])
    for i, trick in enumerate(TRICKS):
        hits = found(config, "zebra handbook page", mode, [trick], k=50)
        assert {hit["doc_id"] for hit in hits} == {f"doc-{i}"}, trick  # its own page, nothing else


def test_status_counts_documents_by_acl_and_a_run_warns_above_the_missing_share():
    documents = pa.table({"acl": pa.array([["public"], ["group:a"], None, [], ["group:b", "public"]], ACL)})
    assert acl_counts(documents, AccessConfig(mode="enforce")) == {"public": 2, "restricted": 1, "missing": 2}
    assert "2 of 5 documents have no ACL" in missing_acl_warning(documents, AccessConfig(mode="enforce"))
    assert missing_acl_warning(documents, AccessConfig(mode="enforce", max_missing_share=0.4)) is None
    assert missing_acl_warning(documents, AccessConfig(mode="off")) is None


def test_acl_values_from_rows_and_rules():
    class Rule:
        def __init__(self, include, principals):
            self.include, self.principals = include, principals

    rules = [Rule("hr/**", ["group:hr"]), Rule("**/*.md", ["group:staff", "group:staff"])]
    assert acl_from_rules("hr/pay.md", ["public"], rules) == ["group:hr"]  # the first match wins
    assert acl_from_rules("guide/a.md", ["public"], rules) == ["group:staff"]
    assert acl_from_rules("guide/a.txt", ["public"], rules) == ["public"]
    assert acl_from_rules("guide/a.txt", None, rules) is None
    assert acl_from_value(" group:b ; user:a ", "f", ";") == ["group:b", "user:a"]
    assert acl_from_value(["x", "y"], "f") == acl_from_value('["y", "x"]', "f") == ["x", "y"]
    for value, reason in [(None, "missing_acl"), ("", "missing_acl"), (" , ", "missing_acl"), ([1], "malformed_acl"),
                          (["a", ""], "malformed_acl"), (3.5, "malformed_acl"), ("[broken", "malformed_acl")]:
        with pytest.raises(BadAcl) as bad:
            acl_from_value(value, "f")
        assert bad.value.reason == reason, value


# -- the property: the prefilter equals brute force over the visible subset -------------------------

GROUPS = [f"group:{i}" for i in range(50)]
WORDS = [f"w{i}" for i in range(300)]


@pytest.fixture(scope="module")
def random_index(tmp_path_factory):
    """2,000 documents with 1-3 random groups each (a few public, a few without an ACL), random
    unit vectors (synthetic, dim 16) and texts of random words; written in two publishes so the
    second's rows reach the ACL and FTS indexes through optimize, plus a replaced batch."""
    rng = np.random.default_rng(7)
    picker = random.Random(7)
    n, dim = 2000, 16
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    acls = []
    for i in range(n):
        roll = picker.random()
        acls.append(None if roll < 0.03 else ["public"] if roll < 0.08 else picker.sample(GROUPS, picker.randint(1, 3)))
    texts = [" ".join(picker.choices(WORDS, k=12)) for _ in range(n)]
    store = Store(StoreConfig(uri=str(tmp_path_factory.mktemp("acl") / "db"), vector_index_min_rows=1_000_000))
    schema = chunks_schema(dim)

    def rows(ids) -> pa.Table:
        run_id = new_run_id()
        table = pa.table({
            "chunk_id": [f"c{i}" for i in ids], "doc_id": [f"d{i}" for i in ids], "source": ["s"] * len(ids),
            "uri": [f"d{i}.md" for i in ids], "tenant": ["t"] * len(ids), "ordinal": [0] * len(ids),
            "heading": [""] * len(ids), "text": [texts[i] for i in ids], "text_hash": [f"h{i}" for i in ids],
            "n_tokens": [12] * len(ids), "metadata": ["{}"] * len(ids),
            "vector": vector_column(vectors[ids], dim), "model": ["synthetic"] * len(ids),
            "run_id": [run_id] * len(ids), "acl": pa.array([acls[i] for i in ids], ACL),
        })
        return table.select(schema.names).cast(schema)

    first, second = list(range(1800)), list(range(1800, n))
    empty_documents = DOCUMENTS.empty_table()
    store.publish(new_run_id(), rows(first), empty_documents, [])
    store.publish(new_run_id(), rows(second), empty_documents, [])
    store.publish(new_run_id(), rows(list(range(100))), empty_documents, [f"d{i}" for i in range(100)])
    return store, vectors, acls, texts


def visible(acls, principals) -> np.ndarray:
    held = set(principals)
    return np.array([acl is not None and bool(held & set(acl)) for acl in acls])


def test_filtered_vector_search_equals_brute_force_over_the_visible_subset(random_index):
    store, vectors, acls, _ = random_index
    rng, picker = np.random.default_rng(11), random.Random(11)
    for _ in range(40):
        principals = picker.sample(GROUPS, picker.randint(1, 4)) + (["public"] if picker.random() < 0.5 else [])
        query = rng.standard_normal(vectors.shape[1]).astype(np.float32)
        mask = visible(acls, principals)
        scores = np.where(mask, vectors @ (query / np.linalg.norm(query)), -np.inf)
        k = min(10, int(mask.sum()))
        exact = [f"c{i}" for i in np.argsort(-scores)[:k]]
        hits = vector_hits(store, query, 10, RowFilter(principals=principals))
        assert [hit["chunk_id"] for hit in hits] == exact, principals


def test_filtered_fts_equals_the_unfiltered_ranking_cut_to_the_visible_subset(random_index):
    """BM25 scores are the same with and without the filter (statistics of the whole index), so the
    filtered top 10 is the unfiltered ranking's visible part cut to 10; equal scores may come in any order."""
    store, _, acls, _ = random_index
    picker = random.Random(13)
    checked = 0
    for _ in range(40):
        principals = picker.sample(GROUPS, picker.randint(1, 4))
        query = " ".join(picker.sample(WORDS, 2))
        everything = fts_hits(store, query, 5000)  # every match, scored over the whole index
        mask = visible(acls, principals)
        exact = [(hit["chunk_id"], round(hit["score"], 4)) for hit in everything if mask[int(hit["chunk_id"][1:])]]
        hits = [(hit["chunk_id"], round(hit["score"], 4)) for hit in
                fts_hits(store, query, 10, RowFilter(principals=principals))]
        assert [score for _, score in hits] == [score for _, score in exact[:10]], (principals, query)
        if hits:
            cut = hits[-1][1]
            assert {c for c, score in exact if score > cut} <= {c for c, _ in hits} <= {c for c, s in exact if s >= cut}
        checked += bool(exact)
    assert checked >= 20  # most queries had visible matches: the comparison was not vacuous


def test_an_acl_change_relabels_stored_chunks_in_one_commit_and_embeds_nothing(tmp_path, hash_embedder):
    config = KbflowConfig(store=StoreConfig(uri=str(tmp_path / "db")), access=AccessConfig(mode="enforce"))
    store = Store(config.store)
    chunks = chunk_table(corpus(), hash_embedder, config.embedding.model)
    store.publish(new_run_id(), chunks, document_table(chunks), [])
    assert found(config, SECRET, "fts", ["group:sales"])[0]["doc_id"] != SECRET_ID
    before = store.chunks(["chunk_id", "vector"], RowFilter(doc_ids=[SECRET_ID]))
    documents = store.documents(rows=RowFilter(doc_ids=[SECRET_ID]))
    documents = documents.set_column(documents.schema.get_field_index("acl"), "acl",
                                     pa.array([["group:sales"]], ACL))
    versions = len(store.table("chunks").list_versions())
    published = store.publish(new_run_id(), chunks.schema.empty_table(), documents, [],
                              acl_changes={SECRET_ID: ["group:sales"]})
    assert published.chunks_deleted == 0 and store.count("chunks") == chunks.num_rows
    after = store.chunks(["chunk_id", "vector", "acl"], RowFilter(doc_ids=[SECRET_ID]))
    assert after.column("vector").to_pylist() == before.column("vector").to_pylist()
    assert after.column("acl").to_pylist() == [["group:sales"]]
    # one data commit (the ACL index refresh and optimize may add maintenance versions after it)
    assert published.chunks_version > versions - 1
    assert found(config, SECRET, "fts", ["group:sales"])[0]["doc_id"] == SECRET_ID
    assert all(hit["doc_id"] != SECRET_ID for hit in found(config, SECRET, "fts", ["group:hr"]))
    assert store.documents(rows=RowFilter(principals=["group:sales"])).column("doc_id").to_pylist() == [SECRET_ID]


def test_resources_hand_the_store_and_embedder_to_search(acl_index):
    """A caller may hand search its own store and embedder (the service keeps them warm)."""
    calls = []

    class Counting(HashEmbedder):
        def encode(self, texts):
            calls.append(list(texts))
            return super().encode(texts)

    embedder = Counting(name=EmbeddingConfig().model)
    resources = Resources(acl_index, Store.existing(acl_index.store), loader=lambda config: embedder)
    hits = search(acl_index, [SECRET], k=3, mode="vector", principals=["group:hr"], resources=resources)
    assert hits[0][0]["doc_id"] == SECRET_ID and calls == [[SECRET]]
