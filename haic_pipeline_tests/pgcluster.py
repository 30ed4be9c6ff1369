"""A throwaway PostgreSQL cluster for the production tests: Debian's PostgreSQL 15 (`.ci/run`
installs the `postgresql` package), started on a free local port by an unprivileged user
(PostgreSQL refuses to run as root: as root, `runuser -u postgres`), data and socket in a temp
folder that user owns, password authentication (scram-sha-256) over TCP on 127.0.0.1, so a wrong
password is refused as on a real server. Stopped and deleted at the end of the session."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "haic_admin"


@dataclass(frozen=True)
class Cluster:
    host: str
    port: int
    superuser: str
    superuser_password: str

    def connect(self, db: str = "postgres", user: str | None = None, password: str | None = None):
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, dbname=db, user=user or self.superuser,
                                password=self.superuser_password if password is None else password,
                                connect_timeout=10)

    def create_database(self, name: str, owner: str, password: str) -> None:
        """A login role `owner` (created if missing) and a database it owns, as the guide does."""
        con = self.connect()
        con.autocommit = True
        try:
            with con.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [owner])
                if cur.fetchone() is None:
                    cur.execute(f'CREATE ROLE "{owner}" LOGIN PASSWORD %s', [password])
                cur.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        finally:
            con.close()

    def env(self, db: str, user: str, password: str) -> dict[str, str]:
        """The DAGSTER_PG_* variables of deploy/production/haic.env.example for this cluster."""
        return {"DAGSTER_PG_HOST": self.host, "DAGSTER_PG_PORT": str(self.port), "DAGSTER_PG_USER": user,
                "DAGSTER_PG_PASSWORD": password, "DAGSTER_PG_DB": db}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ci() -> bool:
    return (os.environ.get("CI") or "").strip().lower() not in ("", "0", "false", "no")


def require_postgres() -> None:
    """Skip when PostgreSQL 15 is not installed, except under CI=true, where that is a failure."""
    if (PG_BIN / "initdb").exists() and (PG_BIN / "pg_ctl").exists():
        return
    message = (f"PostgreSQL 15 is not installed ({PG_BIN}/initdb missing): `apt-get install postgresql` "
               "(.ci/run does)")
    if _ci():
        pytest.fail(message + "; under CI=true this test must run", pytrace=False)
    pytest.skip(message)


def _as_user(user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--"] if user else []


def start_cluster():
    """(Cluster, stop function). Raises with PostgreSQL's log when it does not start."""
    require_postgres()
    user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root, and there is no `postgres` user to run PostgreSQL as", pytrace=False)
        user = "postgres"
    base = Path(tempfile.mkdtemp(prefix="haic-pg-"))
    if user:
        entry = pwd.getpwnam(user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    data, sock, log = base / "data", base / "sock", base / "postgres.log"
    password = "test-superuser-password"
    pwfile = base / "pw"
    pwfile.write_text(password + "\n")
    if user:
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
    run = _as_user(user)
    subprocess.run([*run, str(PG_BIN / "initdb"), "-D", str(data), "-U", SUPERUSER, f"--pwfile={pwfile}",
                    "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"],
                   check=True, capture_output=True, text=True, timeout=120)
    pwfile.unlink()
    (base / "sock").mkdir()
    if user:
        os.chown(sock, entry.pw_uid, entry.pw_gid)
    port = free_port()
    options = (f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
               "-c full_page_writes=off -c max_connections=100 -c shared_buffers=32MB")
    started = subprocess.run([*run, str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log),
                              "-w", "-t", "60", "start"], capture_output=True, text=True, timeout=90)
    if started.returncode != 0:
        text = log.read_text() if log.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {started.stdout}{started.stderr}\n{text[-2000:]}")

    def stop() -> None:
        subprocess.run([*run, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)

    return Cluster(host="127.0.0.1", port=port, superuser=SUPERUSER, superuser_password=password), stop
