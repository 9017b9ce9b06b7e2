"""Main content and boilerplate: what the parser keeps of a real corpus, without embedding.

    python bench/content_bench.py [CORPUS] [--compare-ref main] [--samples 20] [--seed 0] [--json]

CORPUS (default: the PostgreSQL manual of Debian's `postgresql-doc-15`,
/usr/share/doc/postgresql-doc-15/html) is read as one `files` source with the default
includes; Sphinx's `_sources/*.rst.txt` are parsed as reStructuredText. The plain
functions of the ingest flow run directly: discover, parse, boilerplate (found from all
the corpus's documents), chunk with the packaged model's own tokenizer (no embedding).
Printed figures:
- chunks; navigation-only chunks: every line after the heading is a navigation word
  (Prev, Up, Home, Next, …) or a numbered title ("26.3. …", "Chapter 26. …"), with at
  least one navigation word;
- chunks whose heading path ends in an admonition label (Note, Tip, Warning, Caution,
  Important): admonitions are content, never headings;
- the share of parsed characters removed as boilerplate, and the lines removed;
- SAMPLES random chunks (seeded), to read.
`--compare-ref REF` also runs the parser of tasks/formats/parse.py at git REF (e.g. `main`,
the parser before main-content extraction) on the same files and prints its figures
beside: as it was ("before"), and with only the corpus boilerplate pass applied to its
text ("before_plus_boilerplate": what line frequency finds without structure rules).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

import kbflow  # noqa: F401  - offline / no-analytics defaults first
from kbflow.config import ChunkingConfig, source_config
from kbflow.models import HuggingFaceTokenizer, resolve_model_path
from kbflow.schemas import DOCUMENTS, LINE_HASHES
from kbflow.tasks.index.boilerplate import (
    boilerplate_lines, document_line_hashes, find_boilerplate, line_hash, remove_boilerplate,
)
from kbflow.tasks.index.chunk import chunk_documents
from kbflow.tasks.sources.discover import diff_against_documents, discover_source
from kbflow.tasks.formats.base import HEADING_SEPARATOR
from kbflow.tasks.sources.read import parse_documents

DEFAULT_CORPUS = Path("/usr/share/doc/postgresql-doc-15/html")
MODEL = "all-MiniLM-L6-v2"
NAV_WORDS = {"prev", "previous", "next", "up", "home", "top", "back", "index", "contents", "«", "»", "‹", "›", "|"}
NUMBERED_TITLE = re.compile(r"^((chapter|part|appendix|section)\s+[\w.]+\.?|[A-Z]?\d+(\.\d+)*\.)\s", re.IGNORECASE)
ADMONITION_LABELS = {"note", "tip", "warning", "caution", "important"}


def is_navigation_only(text: str, heading: str) -> bool:
    """Chunk text that is only navigation words and numbered titles (see the module docstring)."""
    body = text[len(heading) + 1 :] if heading and text.startswith(heading) else text
    lines = [" ".join(line.split()) for line in body.splitlines() if line.strip()]
    nav = [line for line in lines if all(word.lower() in NAV_WORDS for word in line.split())]
    return bool(nav) and all(line in nav or NUMBERED_TITLE.match(line) for line in lines)


def ends_in_admonition(heading: str) -> bool:
    return heading.split(HEADING_SEPARATOR)[-1].strip().rstrip(":").lower() in ADMONITION_LABELS


def load_parser_at(ref: str):
    """tasks/formats/parse.py as it is at git `ref`, imported as its own module."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(["git", "show", f"{ref}:tasks/formats/parse.py"], cwd=root, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "parse_at_ref.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("parse_at_ref", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module.parse_documents


def figures(documents, chunks, parse_seconds: float) -> dict:
    texts, headings = chunks.column("text").to_pylist(), chunks.column("heading").to_pylist()
    nav = [t for t, h in zip(texts, headings) if is_navigation_only(t, h)]
    admonition = [h for h in headings if ends_in_admonition(h)]
    return {
        "documents": documents.num_rows,
        "text_chars": sum(len(text) for text in documents.column("text").to_pylist()),
        "chunks": chunks.num_rows,
        "navigation_only_chunks": len(nav),
        "admonition_headed_chunks": len(admonition),
        "parse_s": round(parse_seconds, 1),
        "nav_samples": nav[:3],
        "admonition_samples": sorted(set(admonition))[:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--compare-ref", help="also run tasks/formats/parse.py of this git ref (e.g. main)")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        sys.exit(f"error: corpus {args.corpus} is not a directory")

    from transformers import AutoTokenizer

    tokenizer = HuggingFaceTokenizer(AutoTokenizer.from_pretrained(resolve_model_path(MODEL), local_files_only=True))
    chunking = ChunkingConfig()
    max_tokens, overlap = 256, chunking.overlap_tokens
    source = source_config(name="bench", kind="files", path=args.corpus)
    discovery = discover_source(source, 10**9)
    changes = diff_against_documents(discovery, DOCUMENTS.empty_table())

    result = {"corpus": str(args.corpus)}
    if args.compare_ref:
        parse_before = load_parser_at(args.compare_ref)
        started = time.perf_counter()
        documents, _ = parse_before(changes.to_parse, [source])
        seconds = time.perf_counter() - started
        result["before"] = figures(documents, chunk_documents(documents, tokenizer, max_tokens, overlap), seconds)
        # The corpus boilerplate pass alone, on the old parser's text: what frequency finds without structure.
        state = pa.Table.from_pylist(
            [{"source": "bench", "doc_id": d, "content_hash": "", "line_hashes": document_line_hashes(t)}
             for d, t in zip(documents.column("doc_id").to_pylist(), documents.column("text").to_pylist())],
            schema=LINE_HASHES)
        lines = boilerplate_lines(state, chunking)
        stripped = remove_boilerplate(documents, lines)
        result["before_plus_boilerplate"] = figures(stripped, chunk_documents(stripped, tokenizer, max_tokens, overlap), 0)
        result["before_plus_boilerplate"]["boilerplate_lines"] = sorted(
            {" ".join(line.split()) for text in documents.column("text").to_pylist()[:200]
             for line in text.splitlines() if line_hash(line) in lines.get("bench", ())})[:12]

    started = time.perf_counter()
    boilerplate = find_boilerplate(discovery.items, changes, LINE_HASHES.empty_table(), [source], chunking)
    boilerplate_seconds = time.perf_counter() - started
    started = time.perf_counter()
    documents, quarantined = parse_documents(changes.to_parse, [source])
    seconds = time.perf_counter() - started
    stripped = remove_boilerplate(documents, boilerplate.lines)
    chunks = chunk_documents(stripped, tokenizer, max_tokens, overlap)
    after = figures(stripped, chunks, seconds)
    total = sum(len(text) for text in documents.column("text").to_pylist())
    removed = sum(len(a) - len(b) for a, b in zip(documents.column("text").to_pylist(), stripped.column("text").to_pylist()))
    lines = boilerplate.lines.get("bench", frozenset())
    examples = {}
    for text in documents.column("text").to_pylist():
        for line in text.splitlines():
            if line_hash(line) in lines:
                examples[" ".join(line.split())] = examples.get(" ".join(line.split()), 0) + 1
    after |= {
        "quarantined_at_parse": len(quarantined),
        "boilerplate_pass_s": round(boilerplate_seconds, 1),
        "boilerplate_lines": len(lines),
        "boilerplate_share": round(removed / max(1, total), 5),
        "documents_with_boilerplate": sum(1 for s in stripped.column("boilerplate_share").to_pylist() if s),
        "boilerplate_line_samples": sorted(examples.items(), key=lambda kv: -kv[1])[:10],
        "empty_documents": sum(1 for text in stripped.column("text").to_pylist() if not text.strip()),
    }
    result["after"] = after
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(json.dumps(result, indent=2, ensure_ascii=False))
    rng = random.Random(args.seed)
    rows = chunks.select(["uri", "heading", "text", "n_tokens"]).to_pylist()
    for row in rng.sample(rows, min(args.samples, len(rows))):
        print(f"\n--- {row['uri']} [{row['n_tokens']} tokens] heading={row['heading']!r}")
        print(row["text"][:400] + (" …" if len(row["text"]) > 400 else ""))


if __name__ == "__main__":
    main()
