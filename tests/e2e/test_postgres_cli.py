"""The CLI against a real PostgreSQL: migrate, the demo's reads, reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
from click.testing import CliRunner

from collector.cli.main import main
from tests.support.services import PgCluster


def config_for(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "collector.toml"
    path.write_text(f'[collector]\ntimezone = "Asia/Shanghai"\n\n[storage]\nurl = "{url}"\n'
                    f'spill_path = "{tmp_path / "spill.db"}"\n')
    return path


def test_db_migrate_works_on_an_empty_and_on_a_current_database(
    pg_cluster: PgCluster, tmp_path: Path,
) -> None:
    cfg = config_for(tmp_path, pg_cluster.create_database("cli_migrate"))
    first = CliRunner().invoke(main, ["db", "migrate", "-c", str(cfg)])
    assert first.exit_code == 0, first.output
    assert "applied: 0001_initial, 0002_daily_views" in first.output
    second = CliRunner().invoke(main, ["db", "migrate", "-c", str(cfg)])
    assert second.exit_code == 0 and "schema is up to date" in second.output


def test_the_demo_stores_its_reads_in_postgres_and_reports_read_them(
    pg_cluster: PgCluster, tmp_path: Path,
) -> None:
    url = pg_cluster.create_database("cli_demo")
    result = subprocess.run(
        [sys.executable, "-m", "collector.cli", "demo", "--hours", "2",
         "--meters", "6", "--storage-url", url, "--db", str(tmp_path / "unused.db")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    with psycopg.connect(url) as conn:
        meters, rows, dupes = conn.execute(
            "SELECT count(DISTINCT meter_id), count(*), count(*) - count(DISTINCT "
            "(meter_id, quantity, kind, ts)) FROM reading_values").fetchone()
        attempts = conn.execute("SELECT count(*) FROM collection_attempts").fetchone()[0]
    assert meters == 8 and rows > 0 and dupes == 0 and attempts > 0  # and 2 transformers
    assert f"{rows} rows stored" in result.stdout.replace("\n", " ")
    cfg = config_for(tmp_path, url)
    latest = CliRunner().invoke(main, ["report", "latest", "-c", str(cfg), "--meter", "m001"])
    assert latest.exit_code == 0 and "1-0:1.8.0" in latest.output
    coll = CliRunner().invoke(main, ["report", "collection", "-c", str(cfg), "--by", "bus",
                                     "--days", "30"])
    assert coll.exit_code == 0 and "bus1" in coll.output


def test_the_api_serves_postgres_from_two_workers_that_share_web_sessions(
    pg_cluster: PgCluster, tmp_path: Path,
) -> None:
    import httpx

    from simulator.ports import free_port
    from tests.support.services import started_api

    cfg = config_for(tmp_path, pg_cluster.create_database("cli_api"))
    cli = [sys.executable, "-m", "collector.cli"]
    made = subprocess.run([*cli, "token", "-c", str(cfg), "create", "--name", "web", "--scope",
                           "read"], capture_output=True, text=True, timeout=60, check=True)
    secret = made.stdout.strip().splitlines()[-1]
    port = free_port()
    server = started_api([*cli, "api", "-c", str(cfg), "--host", "127.0.0.1", "--port",
                          str(port), "--workers", "2"])
    try:
        base = f"http://127.0.0.1:{port}"
        login = httpx.post(f"{base}/login", data={"token": secret, "next": "/flags"},
                           headers={"Origin": base})  # as the browser's own form sends it
        assert login.status_code == 303, login.text
        cookie = {"mc_session": login.cookies["mc_session"]}
        # A new connection each time, so the kernel may hand any of them to either worker.
        answers = [httpx.get(f"{base}/flags", cookies=cookie).status_code for _ in range(8)]
        assert answers == [200] * 8
        assert httpx.get(f"{base}/v1/meters",
                         headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0
