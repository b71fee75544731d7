"""Acquisition: getting every read from the wire into storage, once.

The clock, the schedule, the per-bus pipeline, load-profile catch-up after downtime,
the gateway's uplink and the head-end's MQTT ingest. Imports config, ops, model,
protocols and storage; never flags, field, runtime or cli.
"""
