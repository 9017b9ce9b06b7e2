"""Writing a dataset: the folder is swapped in whole or not at all."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from kbflow.dataset_files import read_split
from kbflow.tasks.datasets import card as dataset_card
from kbflow.tasks.datasets.card import write_dataset


def test_write_dataset_swaps_in_whole_or_leaves_the_previous(tmp_path, monkeypatch):
    table = pa.table({"x": [1]})
    splits = {"train": table, "validation": table.slice(0, 0), "test": table.slice(0, 0)}
    target = tmp_path / "sets" / "sft"
    (target / "manifest.json").parent.mkdir(parents=True)
    (target / "manifest.json").write_text("{}")  # an older build
    write_dataset(splits, target, {"kind": "sft"}, "card one")
    assert (target / "README.md").read_text() == "card one"
    assert json.loads((target / "manifest.json").read_text())["kind"] == "sft"
    # A split without rows has no file (datasets cannot load a zero-row Parquet file); it reads as empty.
    assert sorted(p.name for p in (target / "data").iterdir()) == ["train-00000-of-00001.parquet"]
    assert read_split(target, "test").num_rows == 0 and read_split(target, "test").schema == table.schema
    assert not list(target.parent.glob(".sft.*"))

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(dataset_card.pq, "write_table", crash)
    with pytest.raises(OSError):
        write_dataset(splits, target, {"kind": "sft"}, "card two")
    assert (target / "README.md").read_text() == "card one"
    assert (target / "data" / "train-00000-of-00001.parquet").is_file()
