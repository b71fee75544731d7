"""End-to-end MQTT ingest against storage-only ingest, measured in the same run.

A concentrator publishes N readings in batches (QoS 1) to a throwaway mosquitto; a
head-end subscribes and writes them into a throwaway PostgreSQL. The baseline is the
same readings written straight through PostgresStore.write_readings in the same batch
size, so the ratio is what the broker hop costs.

Then the same stream again into one PostgreSQL with 1 and 2 head-end worker processes
sharing the subscription ($share), as a scaled-out head-end runs.

    python -m bench.mqtt_ingest [--meters 1000] [--intervals 96] [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

from collector.acquisition import mqtt_link
from collector.acquisition.headend import HeadEnd
from collector.config.settings import MqttSettings
from simulator.broker import Mosquitto
from simulator.concentrator import ConcentratorSpec, publish, readings
from storage.postgres import PostgresStore
from tests.support.services import PgCluster


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--intervals", type=int, default=96)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--publish-only", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--worker", nargs=4, metavar=("PORT", "URL", "ID", "GROUP"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        await worker(int(args.worker[0]), args.worker[1], args.worker[2], args.worker[3])
        return
    logging.basicConfig(level=logging.ERROR)
    spec = ConcentratorSpec(meters=args.meters, intervals=args.intervals, batch=args.batch)
    if args.publish_only:
        settings = MqttSettings(port=args.publish_only, username="bench",
                                password_env="BENCH_MQTT_PW")
        async with mqtt_link.client(settings, "bench-concentrator") as client:
            await publish(spec, client)
        return
    rows = readings(spec)
    os.environ["BENCH_MQTT_PW"] = "bench"
    broker = Mosquitto({"bench": "bench"})
    broker.start()
    cluster = PgCluster()
    cluster.start()
    try:
        base = PostgresStore(cluster.create_database("storage_only"))
        await base.migrate()
        started = time.perf_counter()
        for i in range(0, len(rows), args.batch):
            await base.write_readings(rows[i : i + args.batch])
        t_storage = time.perf_counter() - started
        await base.close()

        store = PostgresStore(cluster.create_database("via_mqtt"))
        await store.migrate()
        settings = MqttSettings(role="headend", port=broker.port, username="bench",
                                password_env="BENCH_MQTT_PW")
        head = HeadEnd(settings, store, client_id="bench-headend")
        task = asyncio.create_task(head.run())
        await asyncio.wait_for(head.ready.wait(), 10)
        # The concentrator publishes from its own process, as it would from its own box.
        started = time.perf_counter()
        publisher = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.mqtt_ingest", "--publish-only", str(broker.port),
            "--meters", str(args.meters), "--intervals", str(args.intervals),
            "--batch", str(args.batch))
        while head.stats.readings < len(rows):
            await asyncio.sleep(0.01)
        finished = time.perf_counter()
        await publisher.wait()
        # From the first message the head-end received to the last row committed: the
        # publisher's interpreter start-up is not part of the stream.
        t_mqtt = finished - (head.first_message_at or started)
        stored = await store.count_readings()
        head.stop()
        await task
        await store.close()
        scaled = {n: await shared_workers(n, cluster, broker.port, args, len(rows))
                  for n in (1, 2)}
    finally:
        broker.destroy()
        cluster.destroy()
    a, b = len(rows) / t_mqtt, len(rows) / t_storage
    print(f"{len(rows):,} readings ({args.meters:,} meters × {args.intervals} intervals), "
          f"batches of {args.batch}, QoS 1, one head-end")
    print(f"(a) publish → mosquitto → head-end → PostgreSQL: {t_mqtt:7.2f} s {a:>10,.0f} rows/s "
          f"({stored:,} rows stored)")
    print(f"(b) storage-only ingest, same batches:          {t_storage:7.2f} s {b:>10,.0f} rows/s")
    print(f"ratio a/b = {a / b:.2f}")
    for n, seconds in scaled.items():
        print(f"(w{n}) {n} head-end worker process(es), one PostgreSQL: {seconds:7.2f} s "
              f"{len(rows) / seconds:>10,.0f} rows/s")
    print(f"ratio w2/w1 = {scaled[1] / scaled[2]:.2f}")


async def worker(port: int, url: str, client_id: str, group: str, *,
                 timezone: str = "UTC", progress: bool = False) -> None:
    """A head-end worker process. With `progress` it says how many readings it has
    stored every half second (a driver's progress without a count(*) over millions of
    rows), and its peak memory when it ends."""
    store = PostgresStore(url, timezone=timezone)
    await store.migrate()
    head = HeadEnd(MqttSettings(role="headend", port=port, username="bench",
                                password_env="BENCH_MQTT_PW", share_group=group), store,
                   client_id=client_id)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, head.stop)
    task = asyncio.create_task(head.run())
    await head.ready.wait()
    print("subscribed", flush=True)
    while progress and not task.done():
        print(f"stored {head.stats.readings} {head.stats.new}", flush=True)
        await asyncio.wait([task], timeout=0.5)
    await task
    await store.close()
    if progress:
        print(f"peak {peak_mb():.0f}", flush=True)


def peak_mb() -> float:
    """This process's high-water resident memory (VmHWM). Not getrusage's ru_maxrss,
    which a child started by fork and exec inherits from its parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def shared_workers(n: int, cluster: PgCluster, port: int, args: argparse.Namespace,
                         total: int) -> float:
    """Seconds from the first row stored to the last, with n worker processes.

    Each run has its own share group: an earlier run's stopped workers keep persistent
    sessions in theirs, and the broker would go on queueing their share for them."""
    url = cluster.create_database(f"workers{n}")
    store = PostgresStore(url)
    await store.migrate()
    procs = []
    for i in range(n):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.mqtt_ingest", "--worker", str(port), url,
            f"bench-w{n}-{i}", f"bench{n}", stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        assert await proc.stdout.readline() == b"subscribed\n"
        procs.append(proc)
    publisher = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.mqtt_ingest", "--publish-only", str(port),
        "--meters", str(args.meters), "--intervals", str(args.intervals),
        "--batch", str(args.batch))
    first = None
    deadline = time.perf_counter() + 300
    while (count := await store.count_readings()) < total:
        if time.perf_counter() > deadline:
            raise SystemExit(f"{n} worker(s) stored {count:,} of {total:,} in 300 s")
        if count and first is None:
            first = time.perf_counter()
        await asyncio.sleep(0.005)
    seconds = time.perf_counter() - (first or time.perf_counter())
    await publisher.wait()
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
    await store.close()
    return seconds


if __name__ == "__main__":
    asyncio.run(main())
