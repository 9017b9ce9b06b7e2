from __future__ import annotations

import numpy as np
import pyarrow as pa

from kbflow.schemas import CHUNKED
from kbflow.tasks.index.chunk import sha256_text
from kbflow.tasks.index.embed import embed_chunks

from fakes import HashEmbedder


def chunks_of(texts: list[str]) -> pa.Table:
    rows = [{"chunk_id": f"c{i}", "doc_id": "d", "source": "s", "uri": "u", "tenant": "t", "ordinal": i,
             "heading": "", "text": text, "text_hash": sha256_text(text), "n_tokens": 3, "metadata": "{}"}
            for i, text in enumerate(texts)]
    return pa.Table.from_pylist(rows, schema=CHUNKED)


def test_each_distinct_text_is_embedded_once():
    embedder = HashEmbedder()
    result = embed_chunks(chunks_of(["footer text", "body one", "footer text", "body two"]), embedder, cached={})
    assert sorted(embedder.encoded) == ["body one", "body two", "footer text"]
    assert (result.embedded, result.reused) == (3, 1)
    vectors = np.array(result.chunks.column("vector").to_pylist())
    assert vectors.shape == (4, embedder.dim)
    np.testing.assert_allclose(vectors[0], vectors[2])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert set(result.chunks.column("model").to_pylist()) == {"test-hash"}


def test_cached_vectors_are_reused_not_recomputed():
    embedder = HashEmbedder()
    cached_vector = np.full(embedder.dim, 1 / np.sqrt(embedder.dim), dtype=np.float32)
    result = embed_chunks(chunks_of(["known", "fresh"]), embedder, cached={sha256_text("known"): cached_vector})
    assert embedder.encoded == ["fresh"]
    assert (result.embedded, result.reused) == (1, 1)
    np.testing.assert_allclose(result.chunks.column("vector")[0].as_py(), cached_vector)


class CallRecorder(HashEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    def encode(self, texts):
        self.calls.append(list(texts))
        return super().encode(texts)


def test_texts_are_encoded_in_length_sorted_batches_and_rows_keep_their_order():
    texts = [" ".join(f"w{i}" for _ in range(1 + (i * 7) % 23)) + f" t{i}" for i in range(40)]
    embedder = CallRecorder()
    result = embed_chunks(chunks_of(texts), embedder, cached={})
    # Longest first in whole batches (16): the batches one encode call over all texts would
    # make, so short texts are padded only to other short ones and the partial batch is short.
    assert [len(call) for call in embedder.calls] == [16, 16, 8]
    lengths = [len(text) for call in embedder.calls for text in call]
    assert lengths == sorted(lengths, reverse=True)
    vectors = np.array(result.chunks.column("vector").to_pylist())
    np.testing.assert_allclose(vectors, HashEmbedder().encode(texts), rtol=1e-6)
