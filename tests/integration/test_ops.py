"""Metrics, health and logs as an operator sees them, from a running daemon."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from pathlib import Path

from collector.config.settings import OpsSettings, Schedule, Settings, StorageSettings
from collector.ops.logs import JsonFormatter, TextFormatter
from collector.ops.metrics import Metrics
from collector.runtime.daemon import run_collector
from model import Meter
from simulator.ports import free_port


async def get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = (await reader.read()).decode()
    writer.close()
    status = int(raw.split()[1])
    return status, raw.split("\r\n\r\n", 1)[1]


def reads_total(metrics: Metrics) -> float:
    return sum(s.value for m in metrics.reads.collect() for s in m.samples
               if s.name == "collector_reads_total")


async def test_a_running_daemon_serves_metrics_liveness_and_readiness(tmp_path: Path) -> None:
    port = free_port()
    metrics = Metrics()
    settings = Settings(
        source="(test)", storage=StorageSettings(url=f"sqlite:///{tmp_path / 'ops.db'}"),
        meters=(Meter("t1", "modbus-tcp", f"127.0.0.1:{free_port()}", "1", model="sdm120"),),
        schedules=(Schedule("i", timedelta(seconds=1), ("1-0:1.8.0",)),),
        ops=OpsSettings(listen=f"127.0.0.1:{port}"))
    daemon = asyncio.create_task(run_collector(settings, handle_signals=False, metrics=metrics))
    try:
        while reads_total(metrics) < 1:  # a read attempted (nothing answers there)
            await asyncio.sleep(0.05)
        status, body = await get(port, "/metrics")
        assert status == 200
        assert 'collector_reads_total{bus="' in body
        assert "collector_read_latency_seconds_bucket" in body
        assert (await get(port, "/healthz"))[0] == 200
        status, body = await get(port, "/readyz")
        assert status == 200, body
        assert json.loads(body)["checks"]["store"]["ok"] is True
        assert (await get(port, "/nope"))[0] == 404
    finally:
        daemon.cancel()
        await asyncio.gather(daemon, return_exceptions=True)


def record(**fields: object) -> logging.LogRecord:
    rec = logging.LogRecord("collector.acquisition.pipeline", logging.WARNING, __file__, 1,
                            "meter %s on bus %s: %s", ("m1", "bus1", "no reply"), None)
    for key, value in fields.items():
        setattr(rec, key, value)
    return rec


def test_log_lines_carry_meter_bus_and_gateway_as_fields() -> None:
    rec = record(meter="m1", bus="bus1", gateway="gw-7")
    event = json.loads(JsonFormatter().format(rec))
    assert event["meter"] == "m1" and event["bus"] == "bus1" and event["gateway"] == "gw-7"
    assert event["level"] == "warning" and "no reply" in event["message"]
    line = TextFormatter().format(rec)
    assert "\n" not in line and "[meter=m1 bus=bus1 gateway=gw-7]" in line
