"""PII detection: precision on a technical corpus, recall on the planted PII, before and after.

Precision: every finding on the PostgreSQL 15 manual (Debian `postgresql-doc-15`, text extracted
with kbflow's own HTML parser) is looked up in a hand-reviewed list, bench/data/pii_pg_review.jsonl
(one line per distinct (type, value): is it personal data?). The list keeps a hash of each value,
not the value, so neither the manual's text nor anyone's address is committed; `--list` prints the
findings with their labels. Recall: the planted corpus of tests/tasks/test_pii.py and the planted
values of tests/flows/test_build_dataset.py, each found with its type and exact text, or missed.
Technical text: the issue's examples (tests/tasks/test_pii.py TECHNICAL) returned unchanged.

"Before" is tasks/datasets/pii.py as of BASELINE_REV, loaded from git; "after" is the working tree.

    python bench/pii_bench.py                 # figures
    python bench/pii_bench.py --list          # every finding with its label
    python bench/pii_bench.py --baseline REV  # compare with another revision
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib
import json
import subprocess
import sys
import time
import types
from collections import Counter
from pathlib import Path

from kbflow.tasks.datasets import pii as current
from kbflow.tasks.formats.html import parse_html

ROOT = Path(__file__).resolve().parent.parent
MANUAL = Path("/usr/share/doc/postgresql-doc-15/html")
REVIEW = ROOT / "bench" / "data" / "pii_pg_review.jsonl"
BASELINE_REV = "0a27c8c"  # main before issue 12 item 5 (PII that knows technical text)


def review_key(kind: str, value: str) -> str:
    """The reviewed list's key for a finding: a hash, so the value itself is not committed."""
    return hashlib.sha256(f"{kind}\t{value}".encode()).hexdigest()[:16]


def load_detector(rev: str) -> types.ModuleType:
    """tasks/datasets/pii.py as of git revision `rev`, as a module."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:tasks/datasets/pii.py"], check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType(f"pii_{rev}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:tasks/datasets/pii.py", "exec"), module.__dict__)  # noqa: S102 - our own file
    return module


def manual_texts(pages: int | None) -> list[tuple[str, str]]:
    """(page name, extracted text) of the manual's pages, by name."""
    if not MANUAL.is_dir():
        sys.exit(f"{MANUAL} is missing: apt-get install -y postgresql-doc-15")
    paths = sorted(MANUAL.glob("*.html"))[:pages]
    return [(path.name, parse_html(path.read_text(encoding="utf-8", errors="replace")).text) for path in paths]


def _pii_tests() -> types.ModuleType:
    """tests/tasks/test_pii.py: the one home of the planted corpus and the technical examples."""
    sys.path.insert(0, str(ROOT / "tests" / "tasks"))
    return importlib.import_module("test_pii")


def planted() -> list[tuple[str, str, str]]:
    """(type, value, text holding it): the unit tests' planted corpus and the dataset flow test's values."""
    corpus = _pii_tests().planted_texts()
    flow_test = ast.parse((ROOT / "tests" / "flows" / "test_build_dataset.py").read_text())
    for node in flow_test.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "PLANTED_PII":
            corpus += [(kind, value, f"Contact record: {value}; kept on file.")
                       for kind, value in ast.literal_eval(node.value).items()]
    return corpus


def technical() -> dict[str, str]:
    """The issue's technical examples that must come back unchanged."""
    return _pii_tests().TECHNICAL


def measure(detector: types.ModuleType, texts, labels: dict[str, dict]) -> dict:
    started = time.perf_counter()
    findings = [(page, m.type, m.text) for page, text in texts for m in detector.find_pii(text)]
    seconds = time.perf_counter() - started
    verdicts = [labels.get(review_key(kind, value), {}).get("pii") for _, kind, value in findings]
    distinct = {(kind, value): verdict for (_, kind, value), verdict in zip(findings, verdicts, strict=True)}
    recalled = [(kind, value) for kind, value, text in planted()
                if any((m.type, m.text) == (kind, value) for m in detector.find_pii(text))]
    intact = [name for name, text in technical().items() if not detector.find_pii(text)]
    return {
        "seconds": seconds,
        "findings": findings,
        "verdicts": verdicts,
        "per_type": Counter(kind for _, kind, _ in findings),
        "true": sum(v is True for v in verdicts),
        "unreviewed": sorted({(k, v) for (_, k, v), verdict in zip(findings, verdicts, strict=True) if verdict is None}),
        "distinct": len(distinct),
        "distinct_true": sum(v is True for v in distinct.values()),
        "recalled": Counter(kind for kind, _ in recalled),
        "intact": intact,
    }


def ratio(n: int, d: int) -> str:
    return f"{n}/{d} = {n / d:.3f}" if d else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=None, help="first N pages only (default: all)")
    parser.add_argument("--baseline", default=BASELINE_REV, help=f"git revision of 'before' (default {BASELINE_REV})")
    parser.add_argument("--list", action="store_true", help="print every finding with its reviewed label")
    args = parser.parse_args()

    labels = {}
    for line in REVIEW.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            labels[row["key"]] = row
    texts = manual_texts(args.pages)
    print(f"corpus: {len(texts)} pages of {MANUAL}, {sum(len(t) for _, t in texts):,} characters")
    runs = {"before": measure(load_detector(args.baseline), texts, labels), "after": measure(current, texts, labels)}

    types_ = sorted(set(runs["before"]["per_type"]) | set(runs["after"]["per_type"]))
    print("\nfindings on the manual per type (before -> after):")
    for kind in types_:
        print(f"  {kind:<15} {runs['before']['per_type'][kind]:>4} -> {runs['after']['per_type'][kind]:>4}")
    total = len(planted())
    for name, run in runs.items():
        print(f"\n{name} ({args.baseline if name == 'before' else 'working tree'}):")
        print(f"  findings {len(run['findings'])}, reviewed as true PII {run['true']}, "
              f"precision {ratio(run['true'], len(run['findings']))}")
        print(f"  distinct values {run['distinct']}, true {run['distinct_true']}, "
              f"precision {ratio(run['distinct_true'], run['distinct'])}")
        print(f"  planted recall {ratio(sum(run['recalled'].values()), total)} "
              f"({', '.join(f'{k} {n}' for k, n in sorted(run['recalled'].items()))})")
        print(f"  technical examples intact {len(run['intact'])}/{len(technical())}")
        print(f"  scan time {run['seconds']:.2f} s")
        if run["unreviewed"]:
            print(f"  UNREVIEWED findings ({len(run['unreviewed'])}): label them in {REVIEW.name}")
            for kind, value in run["unreviewed"]:
                print(f"    {review_key(kind, value)}  {kind}  {value}")
    if args.list:
        for name, run in runs.items():
            print(f"\nall findings, {name}:")
            for (page, kind, value), verdict in zip(run["findings"], run["verdicts"], strict=True):
                why = labels.get(review_key(kind, value), {}).get("why", "")
                print(f"  {'PII ' if verdict else 'not ' if verdict is False else '??  '} {kind:<12} {value:<40} "
                      f"{page}  {why}")


if __name__ == "__main__":
    main()
