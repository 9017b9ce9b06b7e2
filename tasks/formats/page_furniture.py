"""Page furniture of paged formats (PDF): running headers and footers, page numbers.

A PDF's text comes page by page, and each page repeats its running header and footer
("Shared MIME-info Database" on top, "2" at the bottom). Left in, they cut sentences that
run across pages and make every chunk look alike. A line is furniture when it sits among
the first or last `EDGE_LINES` lines of a page and, with its digits masked ("Page 3 of 9"
reads "Page # of #"), repeats at the same edge on at least half of the pages (two at
least); a line that is only a page number ("7", "- 7 -", "iv", "Page 7") is furniture at
any edge. Repeated text inside the page body is content, never furniture.
"""

from __future__ import annotations

import math
import re
from collections import Counter

EDGE_LINES = 2  # a header or footer is one or two lines at a page's edge
PAGE_NUMBER = re.compile(r"^(?:page\s+)?[-–—\s]*(?:\d{1,5}|[ivx]{1,5})[-–—\s]*(?:(?:of|/)\s*\d{1,5})?$",
                         re.IGNORECASE)


def _masked(line: str) -> str:
    return re.sub(r"\d+", "#", " ".join(line.split())).casefold()


def _edges(lines: list[str]) -> tuple[list[int], list[int]]:
    """Indices of the first and the last EDGE_LINES non-blank lines."""
    filled = [i for i, line in enumerate(lines) if line.strip()]
    return filled[:EDGE_LINES], filled[-EDGE_LINES:]


def strip_page_furniture(pages: list[str]) -> tuple[list[str], str]:
    """The pages without running headers, footers and page numbers; and the most repeated running
    line with a word in it ("" when none), which is most often the document's title."""
    split = [page.splitlines() for page in pages]
    tops, bottoms = Counter(), Counter()
    for lines in split:
        top, bottom = _edges(lines)
        tops.update({_masked(lines[i]) for i in top})
        bottoms.update({_masked(lines[i]) for i in bottom})
    floor = max(2, math.ceil(len(pages) / 2))
    running = {"top": {line for line, n in tops.items() if n >= floor},
               "bottom": {line for line, n in bottoms.items() if n >= floor}}
    kept, seen = [], Counter()
    for lines in split:
        top, bottom = _edges(lines)
        drop = {i for i in top if _masked(lines[i]) in running["top"] or PAGE_NUMBER.match(lines[i].strip())}
        drop |= {i for i in bottom if _masked(lines[i]) in running["bottom"] or PAGE_NUMBER.match(lines[i].strip())}
        seen.update(" ".join(lines[i].split()) for i in drop if re.search(r"[^\W\d_]{2}", lines[i]))
        kept.append("\n".join(line for i, line in enumerate(lines) if i not in drop))
    title = seen.most_common(1)[0][0] if seen else ""
    return kept, title
