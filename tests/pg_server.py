"""A real PostgreSQL for the tests, started from pip-installed binaries (pgserver) or the system's.

It listens on 127.0.0.1 with password authentication (scram-sha-256), so the tests can log in
with a wrong password and get refused, as a user's database would refuse them. The data folder
lives in a temporary directory removed at the end. Run as root, the server runs as an ordinary
user (`postgres`, or the `pgserver` user pgserver creates): PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

USER = "kbflow"


@dataclass
class PostgresServer:
    bin_dir: Path
    data_dir: Path
    port: int
    password: str
    run_as: str | None

    def url(self, database: str = "postgres", password: str | None = None, port: int | None = None) -> str:
        return (f"postgresql+psycopg://{USER}:{password or self.password}@127.0.0.1:{port or self.port}/{database}")

    def stop(self) -> None:
        _run([self.bin_dir / "pg_ctl", "-D", self.data_dir, "-m", "immediate", "stop"], self.run_as, check=False)
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def binaries() -> list[tuple[Path, str | None]]:
    """Candidate (bin folder, user to run as): pgserver's wheel first, then the system's."""
    candidates = []
    try:
        from pgserver._commands import POSTGRES_BIN_PATH

        candidates.append((Path(POSTGRES_BIN_PATH), "pgserver"))
    except ImportError:
        pass
    system = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    if shutil.which("initdb"):
        system.insert(0, str(Path(shutil.which("initdb")).parent))
    candidates += [(Path(folder), "postgres") for folder in system]
    return [(folder, user if os.geteuid() == 0 else None) for folder, user in candidates
            if (folder / "initdb").exists()]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(command: list, user: str | None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(part) for part in command], user=user, check=check, capture_output=True,
                          text=True, timeout=120, cwd="/")


def _prepare_user(bin_dir: Path, user: str | None) -> None:
    """As root: the server's user must exist and reach the binaries (pgserver knows how)."""
    if user is None:
        return
    if user == "pgserver":
        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists(user)
        ensure_prefix_permissions(bin_dir)
        ensure_folder_permissions(bin_dir, 0o555)
        ensure_folder_permissions(bin_dir.parent / "lib", 0o444)
    else:
        pwd.getpwnam(user)  # KeyError: no such user, try the next candidate


def start_postgres() -> PostgresServer:
    """Start a PostgreSQL with the first binaries that work; RuntimeError listing why each failed."""
    failures = []
    for bin_dir, user in binaries():
        root = Path(tempfile.mkdtemp(prefix="kbflow-pg-"))
        try:
            _prepare_user(bin_dir, user)
            os.chmod(root, 0o755)
            data_dir, password = root / "data", secrets.token_hex(8)
            data_dir.mkdir()
            password_file = root / "password"
            password_file.write_text(password)
            if user:
                entry = pwd.getpwnam(user)
                for path in (data_dir, password_file):
                    os.chown(path, entry.pw_uid, entry.pw_gid)
            _run([bin_dir / "initdb", "-D", data_dir, "-U", USER, f"--pwfile={password_file}", "-E", "UTF8",
                  "--auth-host=scram-sha-256", "--auth-local=scram-sha-256"], user)
            port = free_port()
            options = f"-h 127.0.0.1 -p {port} -k {data_dir} -c fsync=off"
            _run([bin_dir / "pg_ctl", "-D", data_dir, "-w", "-t", "60", "-l", data_dir / "server.log",
                  "-o", options, "start"], user)
            return PostgresServer(bin_dir, data_dir, port, password, user)
        except (OSError, KeyError, subprocess.SubprocessError, ImportError) as error:
            detail = getattr(error, "stderr", "") or ""
            failures.append(f"{bin_dir}: {type(error).__name__}: {error} {detail.strip()[:300]}")
            shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError("no PostgreSQL could start: " + ("; ".join(failures) or "neither pgserver nor a system "
                                                          "postgres (initdb) is installed"))
