"""The file layout of a built dataset, shared by whoever writes or reads one.

`DIR/KIND/data/{train,validation,test}-00000-of-00001.parquet` beside `README.md` (the card)
and `manifest.json` (lineage): the Hugging Face layout `datasets.load_dataset("parquet")` reads.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from kbflow.errors import InvalidInput, MissingFile

SPLITS = ("train", "validation", "test")


def split_file(split: str) -> str:
    return f"data/{split}-00000-of-00001.parquet"


def read_split(dir: Path, split: str) -> pa.Table:
    """One split of a built dataset folder (`DIR/KIND`); an empty table for a split with no rows.

    A split with no rows has no file: `datasets.load_dataset` cannot read a zero-row Parquet file.
    """
    if split not in SPLITS:
        raise InvalidInput(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    dir = Path(dir)
    path = dir / split_file(split)
    if path.is_file():
        return pq.read_table(path)
    written = sorted((dir / "data").glob("*.parquet")) if (dir / "manifest.json").is_file() else []
    if not written:
        raise MissingFile(f"no dataset at {dir}; build it with `kbflow dataset build`")
    return pq.read_schema(written[0]).empty_table()
