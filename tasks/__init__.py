"""Prefect tasks and the plain, typed functions behind them, grouped by domain.

Each subpackage is one floor of the pipeline and imports only the floors below it
(pyproject.toml's import-linter contracts check this):

- `evaluation/`: retrieval metrics on labeled queries, and fine-tuning the embedding model;
- `datasets/`: labeled fine-tuning datasets (pairs, reranker rows, SFT/RAFT) from the index;
- `quality/`: profiles, content rules and the Great Expectations gates, Data Docs;
- `index/`: what turns parsed documents into the index (boilerplate, chunk, embed, publish);
- `sources/`: discover, the diff against the index and the read-and-parse stage, through the
  `Source` protocol of the core package kbflow.sources (where the kinds themselves live);
- `formats/`: bytes to clean text with headings, one module per format.
"""
