"""A PostgreSQL cluster for the studio's Prefect server, from Debian's ``postgresql`` package.

SQLite serialises every write: under many workers Prefect's server answers 503 (SQLITE_BUSY).
PostgreSQL does not, and ``asyncpg`` comes with Prefect. This module runs Debian's binaries
(``/usr/lib/postgresql/<version>/bin``, the newest version) on 127.0.0.1 and a free port:

- PostgreSQL refuses to run as root. Run as a normal user, the cluster is the user's own, in
  ``<per-user folder>/studio/postgres``. Run as root, it runs as the package's ``postgres`` user
  (``runuser``), in ``/var/lib/postgresql/prefect-conductor-<hash of the per-user folder>`` (the
  package's own place for clusters): the postgres user cannot enter root's folders.
- Password authentication (scram) even on loopback, so another local user cannot reach the
  database: the password is made with the cluster and kept in a 0600 file in the per-user folder
  (a cluster whose file is gone is replaced: nobody can sign in to it); it is part
  of the connection URL given to the Prefect server in its environment, never printed.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from prefect_conductor.conductor_cloud.errors import ServiceError, UserError

DATABASE = "prefect"
ROLE = "prefect"
POSTGRES_ROOT = Path("/usr/lib/postgresql")
INSTALL_HINT = "install Debian's package: apt-get install -y postgresql"


class PostgresError(ServiceError):
    """The studio's PostgreSQL could not be set up, started or stopped."""


def binaries() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb``."""
    found = sorted(
        (p for p in POSTGRES_ROOT.glob("*/bin") if (p / "initdb").is_file()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise UserError(
            f"PostgreSQL: no initdb under {POSTGRES_ROOT}/<version>/bin; {INSTALL_HINT}"
        )
    return found[-1]


@dataclass(frozen=True)
class Cluster:
    """One PostgreSQL cluster: where its files are, who runs it, its password file."""

    data_dir: Path
    password_file: Path
    log_file: Path
    run_as: str | None
    """The user the server runs as when we are root (``postgres``), else None (ourselves)."""

    @classmethod
    def for_home(cls, studio_dir: Path) -> Cluster:
        if os.geteuid() == 0:
            # One cluster per per-user folder, as for a normal user.
            digest = hashlib.sha256(str(studio_dir.resolve()).encode()).hexdigest()[:12]
            data = Path("/var/lib/postgresql") / f"prefect-conductor-{digest}"
            return cls(
                data, studio_dir / "postgres.password", data.parent / f"{data.name}.log", "postgres"
            )
        return cls(
            studio_dir / "postgres",
            studio_dir / "postgres.password",
            studio_dir / "postgres.log",
            None,
        )

    def _command(self, *args: str) -> list[str]:
        return ["runuser", "-u", self.run_as, "--", *args] if self.run_as else list(args)

    def _run(self, *args: str, what: str) -> None:
        result = subprocess.run(self._command(*args), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise PostgresError(f"PostgreSQL: {what} failed: {last[0]} (log: {self.log_file})")

    def password(self) -> str:
        """The role's password, made by :meth:`init` with the cluster (0600 from the first byte).
        Never made anywhere else: a new word would not open an existing cluster."""
        try:
            return self.password_file.read_text(encoding="utf-8").strip()
        except OSError as problem:
            raise PostgresError(
                f"PostgreSQL: cannot read {self.password_file} ({problem.strerror})"
            ) from None

    def _new_password(self) -> None:
        self.password_file.parent.mkdir(parents=True, exist_ok=True)
        self.password_file.unlink(missing_ok=True)
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_urlsafe(24))

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def orphaned(self) -> bool:
        """A cluster whose password file is gone (the per-user folder was removed while root's
        cluster, kept outside it, stayed): nobody can sign in to it any more."""
        return self.initialised() and not self.password_file.exists()

    def discard(self) -> None:
        """Stop and remove this cluster's files (only for an orphaned one: its database held
        nothing but the Prefect state of a per-user folder that no longer exists)."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.log_file.unlink(missing_ok=True)

    def init(self) -> None:
        """``initdb`` a new cluster whose superuser is ``prefect`` with the password file's word."""
        bin_dir = binaries()
        if self.run_as:
            try:
                pwd.getpwnam(self.run_as)
            except KeyError:
                raise UserError(f"PostgreSQL: no {self.run_as} user; {INSTALL_HINT}") from None
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._new_password()
        pwfile = self.data_dir.parent / f".{self.data_dir.name}.pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(self.password() + "\n")
        try:
            if self.run_as:
                shutil.chown(self.data_dir, self.run_as, self.run_as)
                shutil.chown(pwfile, self.run_as, self.run_as)
            self._run(
                str(bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                ROLE,
                "--pwfile",
                str(pwfile),
                "--auth",
                "scram-sha-256",
                "-E",
                "UTF8",
                what="initdb",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self, port: int) -> None:
        """``pg_ctl start`` on 127.0.0.1:``port`` (no Unix socket: ``-k`` is the data dir)."""
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {self.data_dir} -c max_connections=200"
        )
        if self.run_as and not self.log_file.exists():
            self.log_file.touch()
            shutil.chown(self.log_file, self.run_as, self.run_as)
        self._run(
            str(binaries() / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
            what="pg_ctl start",
        )

    def create_database(self, port: int) -> None:
        """``createdb prefect`` once (an existing database is kept)."""
        env = {**os.environ, "PGPASSWORD": self.password()}
        command = [
            str(binaries() / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            ROLE,
            "-d",
            "postgres",
            "-tAc",
            f"SELECT 1 FROM pg_database WHERE datname='{DATABASE}'",
        ]
        found = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if "password authentication failed" in found.stderr:
            raise PostgresError(
                f"PostgreSQL: the password in {self.password_file} does not open the cluster in"
                f" {self.data_dir}; remove that folder to start a new, empty one"
            )
        if found.returncode != 0:
            raise PostgresError(
                f"PostgreSQL: cannot connect on port {port}: {found.stderr.strip()[:200]}"
            )
        if found.stdout.strip() == "1":
            return
        created = subprocess.run(
            [
                str(binaries() / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                ROLE,
                DATABASE,
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if created.returncode != 0:
            raise PostgresError(f"PostgreSQL: createdb failed: {created.stderr.strip()[:200]}")

    def running(self) -> bool:
        if not self.initialised():
            return False
        result = subprocess.run(
            self._command(str(binaries() / "pg_ctl"), "-D", str(self.data_dir), "status"),
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def stop(self) -> None:
        """``pg_ctl stop -m fast`` if it runs."""
        if self.running():
            self._run(
                str(binaries() / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-w",
                "stop",
                what="pg_ctl stop",
            )

    def url(self, port: int) -> str:
        """The SQLAlchemy URL Prefect's server takes (holds the password: environment only)."""
        return f"postgresql+asyncpg://{ROLE}:{self.password()}@127.0.0.1:{port}/{DATABASE}"
