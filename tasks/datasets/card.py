"""A built dataset's description and its write: manifest.json (lineage), the README.md card, the swap.

The manifest records what the rows were built from (index table versions, the runs that
wrote the chunks, the labeled sources, generators, config hash, seed) and each used
document's content hash, which `kbflow dataset check` compares with the index later.
The card is Hugging Face front matter plus what a trainer needs: rows and lengths per
split, lineage, hygiene, checks, configuration and a training snippet (the kind's record).
The folder is written beside the target and swapped in whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow.config import KbflowConfig
from kbflow.dataset_files import SPLITS, split_file
from kbflow.models import Tokenizer
from kbflow.tasks.datasets.kinds import dataset_kind, field_values


def config_hash(config: KbflowConfig, kind: str, source: str | None) -> str:
    """sha256 of what decides the rows: the datasets section, the model, the kind and source."""
    relevant = {
        "kind": kind,
        "source": source,
        "datasets": config.datasets.model_dump(mode="json", exclude={"out_dir"}),
        "embedding_model": config.embedding.model,
        "chunking": config.chunking.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def length_stats(kind: str, splits: dict[str, pa.Table], tokenizer: Tokenizer) -> dict[str, dict[str, dict]]:
    """Model tokens per field and split: {split: {field: {min, mean, max}}}."""
    fields = dataset_kind(kind).length_fields
    stats: dict[str, dict[str, dict]] = {}
    for split, table in splits.items():
        # A message field is named by its role ("user", "assistant").
        columns = {name.rsplit(".", 1)[-1]: field_values(table, name) for name in fields}
        stats[split] = {
            name: {"min": min(counts), "mean": round(statistics.fmean(counts), 1), "max": max(counts)}
            for name, texts in columns.items()
            if texts and (counts := tokenizer.count(texts))
        }
    return stats


def describe_dataset(
    kind: str,
    name: str,
    splits: dict[str, pa.Table],
    *,
    config: KbflowConfig,
    source: str | None,
    index: dict[str, Any] | None,
    documents: dict[str, str],
    labeled_sources: list[str],
    dropped: dict[str, int],
    pii: dict[str, int],
    checks: dict[str, Any],
    tokenizer: Tokenizer,
    principals: list[str] | None = None,
    generation: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], str]:
    """The manifest (lineage: index versions, run ids, config hash, seed, document hashes) and the card.

    `generation`: per model-backed generator (local-llm), its speed and accept rate.
    """
    sources = sorted({s for table in splits.values() for s in table.column("source").to_pylist()})
    generators = [] if dataset_kind(kind).labeled else list(dict.fromkeys(config.datasets.generators))
    manifest = {
        "kind": kind,
        "name": name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": config.datasets.seed,
        "config_hash": config_hash(config, kind, source),
        "index": index,
        "sources": sources,
        "labeled_sources": labeled_sources,
        "generators": generators,
        "rows": {split: table.num_rows for split, table in splits.items()},
        "dropped": dropped,
        "pii": pii,
        "pii_policy": config.datasets.pii_policy,
        "checks": {"suite": checks["suite"], "success": checks["success"]},
        "files": [split_file(split) for split in SPLITS if splits[split].num_rows],
        "documents": dict(sorted(documents.items())),
        # [access] mode = "enforce": the principals whose visible documents the rows come from; null: off
        "principals": principals,
        **({"generation": generation} if generation else {}),
    }
    card = render_card(kind, name, manifest, length_stats(kind, splits, tokenizer), config, checks)
    return manifest, card



def render_card(kind: str, name: str, manifest: dict, lengths: dict, config: KbflowConfig, checks: dict) -> str:
    """The dataset card (README.md): Hugging Face front matter, then what a trainer needs to know."""
    spec = dataset_kind(kind)
    rows, index = manifest["rows"], manifest["index"] or {}
    negatives = ", ".join(f'"negative_{n}"' for n in range(1, config.datasets.negatives + 1))
    fields = sorted({f for split in lengths.values() for f in split})
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        *[f"  - split: {split}\n    path: {split_file(split)}" for split in SPLITS if rows[split]],
        "---",
        "",
        f"# {name}",
        "",
        spec.description,
        "Built by `kbflow dataset build`; rebuilt from the same index, config and seed it has the same rows.",
        "",
        "## Rows",
        "",
        "| split | rows | " + " | ".join(f"{f} tokens min / mean / max" for f in fields) + " |",
        "|---|---|" + "---|" * len(fields),
        *[
            f"| {split} | {rows[split]} | "
            + " | ".join(
                "{min} / {mean} / {max}".format(**lengths[split][f]) if f in lengths[split] else "–" for f in fields
            )
            + " |"
            for split in SPLITS
        ],
        "",
        f"Tokens are counted with the tokenizer of `{config.embedding.model}`. Splits are by document "
        "(a seeded hash of the document id), so no document feeds two splits.",
        "",
        "## Lineage",
        "",
        f"- columns: {spec.lineage}",
        f"- index: chunks table version {index.get('chunks_version')}, documents table version "
        f"{index.get('documents_version')}, model `{index.get('model')}`, written by runs "
        f"{', '.join(f'`{r}`' for r in index.get('run_ids', [])) or '–'}",
        f"- sources: {', '.join(manifest['sources']) or '–'}; generators: {', '.join(manifest['generators']) or '–'}",
        "- access: " + ("ACLs not enforced (`[access] mode = \"off\"`)" if manifest["principals"] is None else
                        "rows only from documents visible to " + ", ".join(f"`{p}`" for p in manifest["principals"])
                        + "; `kbflow dataset check` flags rows whose document is no longer visible to them"),
        f"- config hash `{manifest['config_hash']}`, seed {manifest['seed']}; `manifest.json` has the details "
        "and each document's content hash, which `kbflow dataset check` compares with the index.",
        "",
        "## Hygiene",
        "",
        "| step | dropped |",
        "|---|---|",
        *[f"| {step.replace('_', ' ')} | {n} |" for step, n in manifest["dropped"].items()],
        "",
        "Rows (queries, pairs or records), except the `negative …` steps: candidate hard negatives skipped "
        "before a pair's negatives were chosen (navigation only, holding the anchor, matching the anchor "
        "lexically as well as the positive).",
        "",
        f"PII policy `{manifest['pii_policy']}`; PII found per type: "
        + (", ".join(f"{t} {n}" for t, n in sorted(manifest["pii"].items())) or "none")
        + ". Placeholders such as `[EMAIL]` replace what was redacted.",
        "",
        f"Checks (GX suite `{checks['suite']}`, expectations/{checks['suite']}.json): "
        + ", ".join(f"{e['check'] or e['type']} {'✅' if e['success'] else '❌'}" for e in checks["expectations"]),
        "",
        "## Configuration",
        "",
        "```json",
        json.dumps(config.datasets.model_dump(mode="json", exclude={"out_dir"}), indent=2, sort_keys=True),
        "```",
        "",
        "## Training",
        "",
        spec.training.replace("{path}", f"{name}").replace("{negatives}", negatives),
        "",
    ]
    return "\n".join(lines)


def write_dataset(splits: dict[str, pa.Table], target: Path, manifest: dict[str, Any], card: str) -> Path:
    """Write data/, README.md and manifest.json next to `target`, then swap the folder in.

    A crash before the swap leaves the previous dataset as it was (and a `.tmp-` folder
    the next build removes).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "data").mkdir(parents=True)
    checksums = {}
    for split, table in splits.items():
        if table.num_rows == 0:  # no file: datasets.load_dataset fails on a zero-row Parquet file
            continue
        path = staging / split_file(split)
        pq.write_table(table, path)
        checksums[split_file(split)] = hashlib.sha256(path.read_bytes()).hexdigest()
    (staging / "README.md").write_text(card, encoding="utf-8")
    (staging / "manifest.json").write_text(json.dumps({**manifest, "checksums": checksums}, indent=2) + "\n", encoding="utf-8")
    previous = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        target.rename(previous)
    staging.rename(target)
    shutil.rmtree(previous, ignore_errors=True)
    for leftover in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    return target


@task(name="write-dataset", cache_policy=NO_CACHE)
def write_dataset_task(splits: dict[str, pa.Table], target: Path, manifest: dict[str, Any], card: str) -> Path:
    """Swap the new dataset folder into place."""
    return write_dataset(splits, target, manifest, card)
