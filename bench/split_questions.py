"""Split each labeled question set once into a tuning half and a test half (seeded; the halves are committed).

    python bench/split_questions.py            # writes bench/data/<set>_questions.{tune,test}.jsonl

Defaults are chosen on the tuning halves only; bench/README.md quotes the test halves. The split is
written once and committed: re-running it with the same seed reproduces the same files. Each half keeps
the set's line order; a set with an odd count gives the test half the extra question.
"""

from __future__ import annotations

import random
from pathlib import Path

DATA = Path(__file__).parent / "data"
SETS = ("pg", "python", "git")
SEED = 24  # issue 24


def tuning_lines(count: int, seed: int = SEED) -> set[int]:
    """The line numbers (0-based) of the tuning half: a seeded shuffle, its first count // 2."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return set(order[: count // 2])


def main() -> None:
    for name in SETS:
        lines = [line for line in (DATA / f"{name}_questions.jsonl").read_text().splitlines() if line.strip()]
        tuning = tuning_lines(len(lines))
        halves: dict[str, list[str]] = {"tune": [], "test": []}
        for number, line in enumerate(lines):
            halves["tune" if number in tuning else "test"].append(line)
        for which, rows in halves.items():
            (DATA / f"{name}_questions.{which}.jsonl").write_text("".join(row + "\n" for row in rows))
        print(f"{name}: {len(lines)} questions -> tune {len(halves['tune'])}, test {len(halves['test'])}")


if __name__ == "__main__":
    main()
