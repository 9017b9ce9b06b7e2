"""The ANN index on `chunks.vector`: its type and size, its name, and the recall knobs of a query.

Built by the store once the table has `vector_index_min_rows` (below that, an exact scan
is fast and exact); the name records type and partitions, so an outgrown index is seen
and retrained. Measured in bench/vector_index_bench.py.
"""

from __future__ import annotations

import math
import re

from lancedb.index import IvfHnswSq, IvfPq

from kbflow.config import StoreConfig
from kbflow.errors import InvalidInput

# The ANN index's name records its type and partitions, so an outgrown index is seen and retrained.
VECTOR_INDEX_NAME = re.compile(r"^vector_(?P<kind>ivf_pq|ivf_hnsw_sq)_p(?P<partitions>\d+)$")


def partitions_for(config: StoreConfig, rows: int) -> int:
    """IVF partitions: ~sqrt(rows) for IVF-PQ; HNSW searches big partitions well, so 4x fewer."""
    if config.vector_index_partitions:
        return config.vector_index_partitions
    root = math.sqrt(max(rows, 1))
    return max(1, round(root / 4 if config.vector_index_type == "ivf_hnsw_sq" else root))


def sub_vectors_for(config: StoreConfig, dim: int) -> int:
    """PQ sub-vectors: dim/8 (8 dims per byte code keeps recall high), or the nearest that divides dim."""
    if config.vector_index_sub_vectors:
        if dim % config.vector_index_sub_vectors:
            raise InvalidInput(f"store.vector_index_sub_vectors = {config.vector_index_sub_vectors} must divide "
                             f"the vector dimension {dim}")
        return config.vector_index_sub_vectors
    width = next(w for w in (8, 4, 2, 1) if dim % w == 0)
    return dim // width


def vector_index_name(config: StoreConfig, rows: int) -> str:
    return f"vector_{config.vector_index_type}_p{partitions_for(config, rows)}"


def vector_index_config(config: StoreConfig, rows: int, dim: int) -> IvfPq | IvfHnswSq:
    """The ANN index for `rows` vectors of `dim` dimensions (cosine), as configured."""
    partitions = partitions_for(config, rows)
    # Fewer k-means iterations and samples than Lance's defaults (50, 256 per centroid): PQ training
    # dominated the build (100k rows: 450 s -> 190 s on 2 busy cores) at no measured recall loss.
    training = {"max_iterations": 20, "sample_rate": 64}
    if config.vector_index_type == "ivf_hnsw_sq":
        return IvfHnswSq(distance_type="cosine", num_partitions=partitions, **training)
    return IvfPq(
        distance_type="cosine", num_partitions=partitions, num_sub_vectors=sub_vectors_for(config, dim), **training
    )


def refine_factor(config: StoreConfig) -> int:
    """The configured re-rank factor, or the type's default: 48-byte PQ codes need 30 for recall@10 >= 0.95
    at 1M rows, 8-bit SQ codes 10 (bench/vector_index_bench.py); 0: no exact re-rank."""
    if config.vector_refine_factor is not None:
        return config.vector_refine_factor
    return 10 if config.vector_index_type == "ivf_hnsw_sq" else 30


def tune_vector_query(query, config: StoreConfig, k: int):
    """Recall knobs of an ANN query (ignored by an exact scan): partitions probed, exact re-rank, HNSW ef."""
    query = query.nprobes(config.vector_nprobes)
    refine = refine_factor(config)
    if refine:
        query = query.refine_factor(refine)
    if config.vector_index_type == "ivf_hnsw_sq":
        # The graph must return all k * refine_factor candidates: Lance refuses an ef below that.
        query = query.ef(max(config.hnsw_ef, k * max(refine, 1)))
    return query
