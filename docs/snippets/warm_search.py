from datetime import timedelta

import lancedb
from sentence_transformers import SentenceTransformer

from kbflow.models import resolve_model_path

# Once per process: the table (re-read at most every 10 s, so new ingests show) and its model.
chunks = lancedb.connect(".kbflow", read_consistency_interval=timedelta(seconds=10)).open_table("chunks")
recorded = chunks.search().select(["model"]).limit(1).to_list()[0]["model"]
model = SentenceTransformer(resolve_model_path(recorded), device="cpu")


def search(text: str, k: int = 5, tenant: str = "public") -> list[dict]:
    vector = model.encode([text], normalize_embeddings=True)[0]
    return (chunks.search(vector, vector_column_name="vector").distance_type("cosine")
            .where(f"tenant = '{tenant}'", prefilter=True)
            .select(["chunk_id", "uri", "heading", "text", "_distance"]).limit(k).to_list())
