"""The VEE engine as the config describes it: each meter judged at its own interval."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from collector.config.intervals import register_interval
from collector.config.settings import Settings
from collector.vee.engine import VeeEngine, VeeStore
from model import Meter


def build_vee(settings: Settings, store: VeeStore,
              meters: Sequence[Meter] | None = None) -> VeeEngine:
    chosen = list(meters if meters is not None else settings.meters)
    found = register_interval(replace(settings, meters=tuple(chosen)))
    interval_of = found[1] if found else None
    return VeeEngine(store, settings.vee, settings.collector.tz, chosen, interval_of)
