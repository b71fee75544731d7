"""Real services for tests and benchmarks: a throwaway PostgreSQL cluster and mosquitto.

Both run from Debian's binaries on a free loopback port in a temporary directory. initdb
refuses to run as root, so as root the cluster runs as the `postgres` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from simulator.ports import free_port


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


class PgCluster:
    def __init__(self) -> None:
        bindir = postgres_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed: run ./dev setup")
        self.bin = bindir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="collector-pg-"))
        self.data = self.root / "data"
        self.run_as = "postgres" if os.geteuid() == 0 else None
        if self.run_as:
            os.chmod(self.root, 0o755)
            pw = pwd.getpwnam(self.run_as)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._cmd([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                   "--auth=trust", "-E", "UTF8", "--no-sync"])

    def _cmd(self, args: list[str]) -> None:
        if self.run_as:
            args = ["runuser", "-u", self.run_as, "--", *args]
        subprocess.run(args, check=True, capture_output=True, cwd=self.root)

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200")
        if (self.bin.parent / "lib" / "timescaledb.so").exists():
            # TimescaleDB only loads preloaded; where it is installed, test it too.
            opts += " -c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off"
        self._cmd([str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts,
                   "-l", str(self.root / "log"), "-w", "start"])

    def stop(self, mode: str = "fast") -> None:
        self._cmd([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def psql(self) -> str:
        return str(self.bin / "psql")


@contextmanager
def running_cluster() -> Iterator[PgCluster]:
    cluster = PgCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


def started_api(cmd: list[str]) -> subprocess.Popen[str]:
    """`collector api` in a child process, returned once uvicorn says it is serving; its
    log is drained on a thread from then on, so a chatty server never blocks on a full
    pipe."""
    import threading

    server = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    assert server.stderr is not None
    for line in server.stderr:
        if "Application startup complete" in line:
            break
    else:
        raise RuntimeError(f"{' '.join(cmd[:4])} … exited with {server.wait()}")
    stream = server.stderr
    threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()
    return server
