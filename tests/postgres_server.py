"""A throwaway PostgreSQL server for the tests: ``initdb`` into a temporary folder, ``pg_ctl`` on a free
port, stopped and removed at the end. The binaries come from Debian's ``postgresql`` package
(``make system-deps``), found under /usr/lib/postgresql/<version>/bin or on PATH.

initdb refuses to run as root: as root the server runs as the ``postgres`` user (or ``nobody``).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.api_server import free_port

USER = "rag"
PASSWORD = "s3cret-pw"  # password authentication over TCP is on: tests check the password never shows


def postgres_bin() -> Path | None:
    """The folder of the newest installed PostgreSQL server binaries, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class PostgresServer:
    data: Path
    port: int
    bin: Path
    run_as: str | None

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        _run(self, [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"], check=False)
        shutil.rmtree(self.data.parent, ignore_errors=True)


def _run(server_or_user: PostgresServer | str | None, command: list[str], check: bool = True) -> None:
    user = server_or_user.run_as if isinstance(server_or_user, PostgresServer) else server_or_user
    if user is not None:
        command = ["runuser", "-u", user, "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stdout}\n{result.stderr}")


def start_postgres() -> PostgresServer:
    binaries = postgres_bin()
    if binaries is None:
        raise RuntimeError("PostgreSQL server binaries not found: run `make system-deps` (Debian package postgresql)")
    run_as = None
    if os.geteuid() == 0:
        run_as = "postgres" if _user_exists("postgres") else "nobody"
    root = Path(tempfile.mkdtemp(prefix="rag-pg-"))
    data = root / "data"
    password_file = root / "password"
    password_file.write_text(PASSWORD, encoding="utf-8")
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        os.chown(root, entry.pw_uid, entry.pw_gid)
        os.chown(password_file, entry.pw_uid, entry.pw_gid)
    _run(run_as, [str(binaries / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={password_file}",
                  "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"])
    port = free_port()
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    server = PostgresServer(data, port, binaries, run_as)
    _run(server, [str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w",
                  "-t", "500", "start"])
    _wait_accepting(server)
    return server


def _wait_accepting(server: PostgresServer, timeout: float = 60) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(server.url(), connect_timeout=5):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# -- pytest fixtures (import them into a test module: ``from tests.postgres_server import postgres, catalog_target``)

import pytest  # noqa: E402  (the helpers above need no pytest)


@pytest.fixture(scope="session")
def postgres():  # type: ignore[no-untyped-def]
    """One throwaway server for the whole session; each test takes a database of its own."""
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_target(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """What ``Catalog`` opens: a SQLite file, or a new database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return tmp_path / "catalog.sqlite"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database()
