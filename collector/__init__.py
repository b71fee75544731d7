"""meter-collector: what to read, when, and what it means.

One room per capability, each importing only the rooms below it (a test walks the
import graph and enforces this):

    errors        the root of our exception hierarchy
    config, ops   settings from collector.toml; metrics, health, logs, service units
    acquisition   clock, scheduler, pipeline, gateway uplink, head-end ingest, catch-up
    flags, field  what the data means (flags, screening); the technician's tools
    runtime       the processes that wire the rooms together: the daemon and the demo
    cli           one module per command group, over one shared context object

Below all of them: model (the data model), protocols, storage and simulator.
"""

__version__ = "0.1.0"
