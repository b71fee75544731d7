"""The Prometheus metrics a gateway or head-end exports, in one registry per daemon.

A registry per instance (not prometheus_client's global one) lets tests and the demo run
several daemons in one process without their counters adding up.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.reads = Counter("collector_reads", "Meter reads by bus and outcome.",
                             ["bus", "outcome"], registry=r)
        self.read_latency = Histogram("collector_read_latency_seconds",
                                      "Time one meter's reads took.", ["bus"],
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.overruns = Counter("collector_slot_overruns",
                                "Reads skipped because the bus fell a slot behind.", ["bus"],
                                registry=r)
        self.recovered = Counter("collector_recovered_slots",
                                 "Missed slots re-read from meter memory after downtime.",
                                 ["bus"], registry=r)
        self.outbox_rows = Gauge("collector_outbox_rows", "Rows waiting for the uplink.",
                                 registry=r)
        self.outbox_oldest = Gauge("collector_outbox_oldest_seconds",
                                   "Age of the oldest row waiting for the uplink.", registry=r)
        self.ingest_rows = Counter("collector_ingest_rows",
                                   "Readings handed to storage, by path.", ["path"], registry=r)
        self.dead_letters = Counter("collector_dead_letters",
                                    "Inputs kept as dead letters, by reason.", ["reason"],
                                    registry=r)
        self.open_flags = Gauge("collector_open_flags", "Open flags by kind.", ["kind"],
                                registry=r)
        self.task_restarts = Counter("collector_task_restarts",
                                     "Background tasks restarted after a failure.", ["task"],
                                     registry=r)
        self.task_failures = Counter("collector_task_errors",
                                     "Errors caught inside a task that kept running.",
                                     ["task"], registry=r)
        self.last_cycle = Gauge("collector_last_cycle_timestamp_seconds",
                                "When the last collection slot finished with a read.",
                                registry=r)
        self.q1376_online = Gauge("collector_q1376_online",
                                  "1 while a concentrator is logged in, by terminal address.",
                                  ["terminal"], registry=r)
        self.q1376_logins = Counter("collector_q1376_logins",
                                    "Concentrator logins, by terminal address.", ["terminal"],
                                    registry=r)
        self.q1376_frames = Counter("collector_q1376_frames",
                                    "Reply frames read from concentrators, by outcome.",
                                    ["terminal", "outcome"], registry=r)
