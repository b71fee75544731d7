"""Energy registers integrated minute by minute from a load model, with daily freezes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from simulator.load import FOUR_RATE, MINUTE, LoadModel, tariff_at

TARIFFS = 4


@dataclass(frozen=True)
class EnergyChange:
    """What a meter's registers count over a window of simulated time: the cases VEE
    must handle, made on the wire rather than painted onto stored series."""

    start: datetime
    end: datetime | None = None
    """None: from `start` on."""
    scale: float = 1.0
    """Counted per true kWh inside the window: 0 a stopped register (a zero run while
    voltage is present), 0.5 a CT ratio doubled."""
    extra_kw: float = 0.0
    """Load added inside the window: a spike."""
    restart_at: float | None = None
    """At `start` the registers restart from this value: a meter swapped at the same
    address, with nobody recording it."""
    meter_number: int | None = None
    """From `start` the meter reports this meter number (表号): the new meter's."""

    def covers(self, epoch: float) -> bool:
        return self.start.timestamp() <= epoch and (self.end is None
                                                    or epoch < self.end.timestamp())


@dataclass
class RegisterBank:
    """Cumulative forward/reverse energy per tariff, advanced lazily to the query time.

    Each whole minute's energy is cached, so asking about a past instant (a daily freeze,
    a replayed query) is a lookup rather than a re-integration.
    """

    load: LoadModel
    start_epoch: int
    forward0: float = 0.0
    reverse0: float = 0.0
    scale: float = 1.0
    """What the meter counts per true kWh: 1.0 healthy, 0 stopped, >1 runaway."""
    calendar: tuple[int, ...] = FOUR_RATE
    """The meter's tariff register for each local hour."""
    changes: tuple[EnergyChange, ...] = ()
    registered: Callable[[float], float] | None = None
    """What the meter counts per true kWh at an instant (a miswired meter: less, or
    negative into the reverse register)."""
    _forward: list[list[float]] = field(default_factory=list)
    _reverse: list[list[float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.start_epoch -= self.start_epoch % MINUTE
        self._forward = [_split(self.forward0)]
        self._reverse = [_split(self.reverse0)]

    def _advance_to(self, minutes: int) -> None:
        while len(self._forward) <= minutes:
            m = len(self._forward) - 1
            epoch = self.start_epoch + m * MINUTE
            kw = self.load.net_kw(epoch) * self.scale
            if self.registered is not None:
                kw *= self.registered(epoch)
            f, r = list(self._forward[-1]), list(self._reverse[-1])
            for change in self.changes:
                if change.covers(epoch):
                    kw = kw * change.scale + change.extra_kw * self.scale
                if change.restart_at is not None and change.start.timestamp() == epoch:
                    f, r = _split(change.restart_at), [0.0] * (TARIFFS + 1)
            kwh = abs(kw) / 60.0
            tariff = tariff_at(self.load.local_hour(epoch), self.calendar)
            target = f if kw >= 0 else r
            target[0] += kwh
            target[tariff] += kwh
            self._forward.append(f)
            self._reverse.append(r)

    def _at(self, series: list[list[float]], epoch: float) -> list[float]:
        offset = max(0.0, epoch - self.start_epoch)
        whole = int(offset // MINUTE)
        self._advance_to(whole + 1)
        frac = (offset - whole * MINUTE) / MINUTE
        lo, hi = series[whole], series[whole + 1]
        return [a + (b - a) * frac for a, b in zip(lo, hi, strict=True)]

    def forward(self, epoch: float) -> list[float]:
        """[total, tariff 1..4] in kWh at `epoch`."""
        return self._at(self._forward, epoch)

    def reverse(self, epoch: float) -> list[float]:
        return self._at(self._reverse, epoch)


_TARIFF_SHARE = (0.1, 0.3, 0.35, 0.25)


def _split(total: float) -> list[float]:
    """An opening register spread over the tariffs, so total = Σ tariffs from the start."""
    parts = [round(total * share, 2) for share in _TARIFF_SHARE]
    return [sum(parts), *parts]
