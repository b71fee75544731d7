"""A data concentrator that publishes reads for many meters over MQTT.

It stands in for third-party concentrators at the head-end: batches of interval reads
on the v1 topics, with optional duplicate publishes, out-of-order batches and malformed
payloads, all from a seed so a test knows exactly what should arrive.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiomqtt

from model import Reading
from protocols.mqtt import schema, topics
from simulator.load import LoadModel

MALFORMED: tuple[bytes, ...] = (
    b"\xff\xfe not utf-8",
    b"{not json",
    b'{"v": 9, "gateway": "x", "seq": 1, "readings": []}',
    b'{"v": 1, "seq": 1, "readings": [{"meter": "m"}]}',
    b"[1, 2, 3]",
)


@dataclass
class ConcentratorSpec:
    gateway: str = "dc-01"
    meters: int = 100
    intervals: int = 96
    batch: int = 250
    seed: int = 3
    duplicate_every: int = 0
    """Publish every n-th batch twice (a retry after a lost PUBACK)."""
    shuffle: bool = False
    """Publish batches out of order."""
    malformed: int = 0
    """Malformed payloads to mix in."""
    start: datetime = field(default_factory=lambda: _days_ago(3))
    """A recent midnight: a head-end refuses timestamps older than its `accept_past`."""


def _days_ago(days: int) -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days)


def readings(spec: ConcentratorSpec) -> list[Reading]:
    """Every reading the concentrator will publish: registers at each interval's end."""
    out = []
    for n in range(spec.meters):
        load = LoadModel.for_meter(spec.seed * 7919 + n)
        register = 1000.0 + n
        for i in range(1, spec.intervals + 1):
            ts = spec.start + timedelta(minutes=15 * i)
            register += load.demand_kw(ts.timestamp()) / 4
            out.append(Reading(f"{spec.gateway}-m{n:05d}", "1-0:1.8.0", ts, round(register, 3),
                               "kWh"))
    return out


def payloads(spec: ConcentratorSpec) -> Iterator[bytes]:
    rng = random.Random(spec.seed)
    rows = readings(spec)
    batches = [schema.encode_batch(spec.gateway, seq, readings=rows[i : i + spec.batch])
               for seq, i in enumerate(range(0, len(rows), spec.batch))]
    if spec.duplicate_every:
        batches += batches[:: spec.duplicate_every]
    batches += [MALFORMED[i % len(MALFORMED)] for i in range(spec.malformed)]
    if spec.shuffle:
        rng.shuffle(batches)
    yield from batches


async def publish(spec: ConcentratorSpec, client: aiomqtt.Client,
                  prefix: str = topics.PREFIX) -> int:
    count = 0
    for payload in payloads(spec):
        await client.publish(topics.topic(spec.gateway, "readings", prefix), payload, qos=1)
        count += 1
    return count
