"""Evaluation and fine-tuning: retrieval metrics on labeled queries, and training the embedder."""
