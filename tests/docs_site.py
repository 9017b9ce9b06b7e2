"""Building the docs site for the tests: what `make docs` runs, into a folder of the test's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MKDOCS = str(Path(sys.executable).parent / "mkdocs")


def build_site(site: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`mkdocs build --strict` of the docs into `site`."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([MKDOCS, "build", "--strict", "--site-dir", str(site)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
