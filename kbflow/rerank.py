"""The optional rerank stage: a cross-encoder re-scores the top hits of a search.

Bi-encoder retrieval is fast but reads query and passage apart; a cross-encoder
reads them together and orders the few best candidates better. It is off by
default (`[search] rerank_model` unset) because no cross-encoder ships offline
here: point it at a local folder, e.g. one trained on `kbflow dataset build
--kind reranker` with sentence-transformers' CrossEncoderTrainer.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from kbflow.models import ModelNotAvailable, resolve_device


@functools.lru_cache(maxsize=2)
def load_reranker(path: str, device: str = "cpu"):
    """The cross-encoder saved in the local folder `path`, loaded once per process (`device` may be auto)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelNotAvailable(
            f"search.rerank_model = {path!r} is not a local folder. kbflow loads cross-encoders from local "
            "files only: save one to a folder (CrossEncoder.save_pretrained) and set search.rerank_model "
            "to its path, or remove the key to search without a rerank stage."
        )
    from sentence_transformers import CrossEncoder

    try:
        return CrossEncoder(str(folder), device=resolve_device(device), local_files_only=True)
    except (OSError, ValueError) as error:
        raise ModelNotAvailable(f"could not load the cross-encoder in {folder}: {error}") from error


def rerank_hits(reranker, query: str, hits: list[dict[str, Any]], top_n: int) -> list[dict[str, Any]]:
    """The first `top_n` hits re-scored by the cross-encoder and sorted by it, then the rest as they were.

    Each re-scored hit gets `rerank_score`; its retrieval `score` is kept.
    """
    head, tail = hits[:top_n], hits[top_n:]
    if not head:
        return list(hits)
    scores = reranker.predict([(query, hit["text"]) for hit in head], show_progress_bar=False)
    rescored = [{**hit, "rerank_score": float(score)} for hit, score in zip(head, scores)]
    # A stable sort: ties keep their retrieval order.
    return sorted(rescored, key=lambda hit: -hit["rerank_score"]) + tail
