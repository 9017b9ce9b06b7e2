from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from kbflow.config import ConfigError, EmbeddingConfig, load_config
from kbflow.models import (
    ModelNotAvailable,
    OnnxEmbedder,
    _sentence_transformer_head,
    load_embedder,
    onnx_cache_dir,
    onnx_export,
    resolve_device,
    resolve_model_path,
)


def test_auto_device_is_cuda_only_when_torch_sees_a_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cuda:1") == "cuda:1"  # an explicit device is never second-guessed


def test_embedding_defaults_and_a_bad_backend_is_refused(tmp_path):
    config = EmbeddingConfig()
    assert (config.backend, config.device, config.threads) == ("torch", "auto", None)
    path = tmp_path / "kbflow.toml"
    path.write_text('[embedding]\nbackend = "tensorrt"\n')
    with pytest.raises(ConfigError, match="embedding.backend"):
        load_config(path)


def _st_folder(tmp_path, modules, pooling):
    tmp_path.mkdir()
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (tmp_path / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
    return tmp_path


ST = "sentence_transformers.models."
MEAN = {"word_embedding_dimension": 8, "pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}


def test_onnx_head_reads_pooling_and_refuses_what_it_cannot_run(tmp_path):
    plain = [{"path": "", "type": ST + "Transformer"}, {"path": "1_Pooling", "type": ST + "Pooling"},
             {"path": "2_Normalize", "type": ST + "Normalize"}]
    assert _sentence_transformer_head(_st_folder(tmp_path / "a", plain, MEAN)) == ("mean", 8, 128)
    # A Dense layer after pooling would be silently skipped by the export: refused instead.
    dense = plain[:2] + [{"path": "2_Dense", "type": ST + "Dense"}]
    with pytest.raises(ModelNotAvailable, match="backend = \"torch\""):
        _sentence_transformer_head(_st_folder(tmp_path / "b", dense, MEAN))
    with pytest.raises(ModelNotAvailable, match="Pooling"):
        _sentence_transformer_head(_st_folder(tmp_path / "c", plain, {**MEAN, "pooling_mode_max_tokens": True}))


def test_onnx_backend_without_onnxruntime_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(ModelNotAvailable, match=r"kbflow\[onnx\]"):
        OnnxEmbedder("all-MiniLM-L6-v2", "/nonexistent")


def test_onnx_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KBFLOW_CACHE_DIR", str(tmp_path / "k"))
    assert onnx_cache_dir() == tmp_path / "k" / "onnx"
    monkeypatch.delenv("KBFLOW_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert onnx_cache_dir() == tmp_path / "x" / "kbflow" / "onnx"


SAMPLES = [
    "How do I restore a backup?",
    "Backup and restore > Restoring\nStop the server, then run pg_restore with the dump file. " * 6,
    "x",
    "Les sauvegardes nocturnes gardent quatorze instantanés.",
    "word " * 400,  # longer than the model's 256 tokens: truncated like the torch backend does
]


@pytest.mark.model
def test_onnx_backend_matches_torch_and_reuses_its_export(monkeypatch, tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'kbflow[onnx]')")
    monkeypatch.setenv("KBFLOW_CACHE_DIR", str(tmp_path))
    torch_embedder = load_embedder(EmbeddingConfig(device="cpu"))
    onnx_embedder = OnnxEmbedder(torch_embedder.name, resolve_model_path(torch_embedder.name), batch_size=2)

    # Same name on purpose: the vectors are interchangeable (see OnnxEmbedder's docstring).
    assert (onnx_embedder.name, onnx_embedder.dim, onnx_embedder.max_tokens) == (
        torch_embedder.name, torch_embedder.dim, torch_embedder.max_tokens)
    assert onnx_embedder.tokenizer.count(SAMPLES) == torch_embedder.tokenizer.count(SAMPLES)
    expected, got = torch_embedder.encode(SAMPLES), onnx_embedder.encode(SAMPLES)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.min(np.sum(expected * got, axis=1)) > 0.99999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    # Padded batches (batch_size=2 mixes lengths) equal texts encoded alone: the mask was exported.
    alone = np.stack([onnx_embedder.encode([text])[0] for text in SAMPLES])
    np.testing.assert_allclose(got, alone, atol=1e-5)

    exported = onnx_export(resolve_model_path(torch_embedder.name))
    assert exported.parent.parent == tmp_path / "onnx" and len(list((tmp_path / "onnx").iterdir())) == 1
    before = exported.stat().st_mtime_ns
    assert onnx_export(resolve_model_path(torch_embedder.name)) == exported
    assert exported.stat().st_mtime_ns == before  # cached, not exported again
    configured = load_embedder(EmbeddingConfig(backend="onnx", device="cpu"))
    assert isinstance(configured, OnnxEmbedder) and np.allclose(configured.encode(SAMPLES[:1]), got[:1], atol=1e-6)


def test_a_folder_that_is_not_a_model_names_the_key_the_path_and_what_a_model_folder_holds(tmp_path):
    """Issue 15 #10: it failed with transformers' raw `Unrecognized model in …` error."""
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelNotAvailable) as error:
        load_embedder(EmbeddingConfig(model=str(tmp_path)))
    message = str(error.value)
    assert f"embedding.model = {str(tmp_path)!r} is a folder but not a model" in message
    assert "modules.json" in message and "config.json" in message
