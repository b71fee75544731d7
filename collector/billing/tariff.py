"""Tariffs as TOML files: time-of-use periods per season, tiers, a demand charge.

Like the Modbus profiles, a tariff is data a utility edits, so every mistake in one is
reported with the file, the key and what to change. Period names are the four DL/T 645
tariff registers (1 sharp 尖, 2 peak 峰, 3 flat 平, 4 valley 谷), which is what lets a
bill take each period's energy from the meter's own register and check it against the
intervals summed over this calendar.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from collector.errors import ConfigError

PERIODS = ("sharp", "peak", "flat", "valley")
"""In DL/T 645 register order: period i is tariff register i + 1 (OBIS 1-0:1.8.(i+1))."""
SHIPPED = Path(__file__).with_name("tariffs")
_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")
_MONTH_DAY = re.compile(r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")
_TOP = {"name", "description", "currency", "valid_from", "valid_to", "season", "tiers",
        "demand", "fixed_per_cycle"}


def register_of(period: str) -> str:
    """The meter's energy register (OBIS) that counts a period."""
    return f"1-0:1.8.{PERIODS.index(period) + 1}"


class TariffError(ConfigError):
    """A tariff file that cannot be billed with; says which file, key and fix."""


class UnknownTariff(TariffError):
    """A service point names a tariff no directory holds: that service point's data is
    wrong, not the tariffs, so its bill is held and the others go on."""


@dataclass(frozen=True, slots=True)
class Period:
    name: str
    start: int
    """Minutes after local midnight."""
    end: int
    price: float


@dataclass(frozen=True, slots=True)
class Season:
    name: str
    months: frozenset[int]
    periods: tuple[Period, ...]
    by_minute: tuple[int, ...]
    """Index into `periods` for each of the day's 1,440 minutes."""

    def period_at(self, minute_of_day: int) -> Period:
        return self.periods[self.by_minute[minute_of_day]]


@dataclass(frozen=True, slots=True)
class Tier:
    up_to: float | None
    """Cumulative kWh in the tier year (or cycle) up to which this step applies."""
    add: float
    """Added to the period price for each kWh in this step."""


DEMAND_SPLITS = ("prorate", "whole")


@dataclass(frozen=True, slots=True)
class Tariff:
    name: str
    description: str
    currency: str
    valid_from: date
    valid_to: date | None
    seasons: tuple[Season, ...]
    tier_basis: str
    """'annual' (the tier year), 'cycle' (each billing cycle) or '' (no tiers)."""
    tier_year_start: tuple[int, int]
    tiers: tuple[Tier, ...]
    demand_price: float
    """Per kW of the cycle's maximum 15-minute demand; 0: no demand charge."""
    fixed_per_cycle: float
    source: str
    season_by_month: tuple[int, ...] = ()
    """Index into `seasons` for months 1–12 (at 0–11): a bill asks per interval."""
    demand_split: str = "prorate"
    """A cycle split by a tariff change: 'prorate' charges each part its own maximum
    times its share of the cycle's days; 'whole' charges the whole cycle's maximum once,
    at the price of the tariff in force at the cycle's end."""

    def season_of(self, day: date) -> Season:
        return self.seasons[self.season_by_month[day.month - 1]]

    def period_at(self, local: datetime) -> Period:
        return self.season_of(local.date()).period_at(local.hour * 60 + local.minute)

    def valid_on(self, day: date) -> bool:
        return day >= self.valid_from and (self.valid_to is None or day < self.valid_to)

    def tier_year_of(self, day: date) -> date:
        """The first day of the tier year that `day` falls in."""
        month, dom = self.tier_year_start
        start = date(day.year, month, dom)
        return start if day >= start else date(day.year - 1, month, dom)

    @property
    def periods(self) -> list[str]:
        """The period names this tariff prices, in register order."""
        used = {p.name for s in self.seasons for p in s.periods}
        return [p for p in PERIODS if p in used]

    def tier_charges(self, before: float, kwh: float) -> list[tuple[int, float, float]]:
        """(tier number, kWh in it, adder) for `kwh` on top of `before` cumulative."""
        out = []
        lower, high = 0.0, before + kwh
        for n, tier in enumerate(self.tiers, start=1):
            upper = tier.up_to if tier.up_to is not None else float("inf")
            take = min(high, upper) - max(before, lower)
            if take > 0:
                out.append((n, take, tier.add))
            lower = upper
        return out


def load_tariff(path: Path) -> Tariff:
    file = str(path)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise TariffError(file, "(file)", f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise TariffError(file, "(file)", "is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise TariffError(file, "(syntax)", str(exc)) from None
    return parse_tariff(data, file, path.stem)


def parse_tariff(data: dict[str, Any], file: str, default_name: str) -> Tariff:
    _only(data, _TOP, file, "(top level)")
    name = _get(data, "name", str, file, "", default_name)
    currency = _get(data, "currency", str, file, "", "CNY")
    valid_from = _get(data, "valid_from", date, file, "", None)
    if valid_from is None:
        raise TariffError(file, "valid_from", "is required: the first day the tariff applies",
                          "valid_from = 2026-01-01")
    valid_to = _get(data, "valid_to", date, file, "", None)
    if valid_to is not None and valid_to <= valid_from:
        raise TariffError(file, "valid_to", f"{valid_to} is not after valid_from {valid_from}")
    seasons = _seasons(data.get("season"), file)
    basis, year_start, tiers = _tiers(data.get("tiers"), file)
    demand = data.get("demand", {})
    if not isinstance(demand, dict):
        raise TariffError(file, "demand", "must be a table", "[demand]\nprice_per_kw = 38.0")
    _only(demand, {"price_per_kw", "split"}, file, "demand")
    demand_price = float(_get(demand, "price_per_kw", (int, float), file, "demand.", 0.0))
    demand_split = _get(demand, "split", str, file, "demand.", "prorate")
    if demand_split not in DEMAND_SPLITS:
        raise TariffError(file, "demand.split", f"{demand_split!r} is not one of "
                          f"{', '.join(DEMAND_SPLITS)}", 'split = "whole"')
    fixed = float(_get(data, "fixed_per_cycle", (int, float), file, "", 0.0))
    for key, value in (("demand.price_per_kw", demand_price), ("fixed_per_cycle", fixed)):
        if not math.isfinite(value) or value < 0:
            raise TariffError(file, key, f"must be a number, not negative, got {value}")
    by_month = tuple(next(i for i, s in enumerate(seasons) if m in s.months)
                     for m in range(1, 13))
    return Tariff(name, _get(data, "description", str, file, "", ""), currency, valid_from,
                  valid_to, seasons, basis, year_start, tiers, demand_price, fixed, file,
                  by_month, demand_split)


def _seasons(raw: Any, file: str) -> tuple[Season, ...]:
    example = ('[[season]]\nname = "all year"\nmonths = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]'
               '\nperiods = [{ from = "00:00", to = "24:00", period = "flat", price = 0.5 }]')
    if not isinstance(raw, list) or not raw:
        raise TariffError(file, "season", "at least one [[season]] is required", example)
    seasons = []
    claimed: dict[int, str] = {}
    for i, s in enumerate(raw):
        where = f"season[{i}]"
        if not isinstance(s, dict):
            raise TariffError(file, where, "must be a table", example)
        _only(s, {"name", "months", "periods"}, file, where)
        name = _get(s, "name", str, file, f"{where}.", f"season {i + 1}")
        months = s.get("months")
        if (not isinstance(months, list) or not months
                or not all(isinstance(m, int) and 1 <= m <= 12 for m in months)):
            raise TariffError(file, f"{where}.months", "must list months 1–12",
                              "months = [6, 7, 8, 9]")
        for m in months:
            if m in claimed:
                raise TariffError(file, f"{where}.months",
                                  f"month {m} is already in season {claimed[m]!r}")
            claimed[m] = name
        periods, by_minute = _periods(s.get("periods"), file, f"{where}.periods")
        seasons.append(Season(name, frozenset(months), periods, by_minute))
    missing = sorted(set(range(1, 13)) - set(claimed))
    if missing:
        raise TariffError(file, "season", f"no season covers month(s) "
                          f"{', '.join(map(str, missing))}; every month needs one")
    return tuple(seasons)


def _periods(raw: Any, file: str, where: str) -> tuple[tuple[Period, ...], tuple[int, ...]]:
    example = 'periods = [{ from = "08:00", to = "22:00", period = "peak", price = 0.5583 }, …]'
    if not isinstance(raw, list) or not raw:
        raise TariffError(file, where, "must list the day's periods", example)
    owner = [-1] * 1440
    periods: list[Period] = []
    for j, p in enumerate(raw):
        at = f"{where}[{j}]"
        if not isinstance(p, dict):
            raise TariffError(file, at, "must be a table", example)
        _only(p, {"from", "to", "period", "price"}, file, at)
        start = _minute(p.get("from"), file, f"{at}.from")
        end = _minute(p.get("to"), file, f"{at}.to")
        name = p.get("period")
        if name not in PERIODS:
            raise TariffError(file, f"{at}.period", f"{name!r} is not one of "
                              f"{', '.join(PERIODS)} (the meter's tariff registers 1–4)")
        price = p.get("price")
        if (isinstance(price, bool) or not isinstance(price, (int, float))
                or not math.isfinite(price) or price < 0):
            raise TariffError(file, f"{at}.price", f"{price!r} is not a price per kWh (a "
                              "number, not negative, not inf or nan)", "price = 0.5583")
        if end == start:
            raise TariffError(file, at, "from and to are the same time")
        minutes = (list(range(start, end)) if end > start
                   else list(range(start, 1440)) + list(range(0, end)))
        index = next((k for k, q in enumerate(periods) if q.name == name), None)
        if index is None:
            periods.append(Period(str(name), start, end, float(price)))
            index = len(periods) - 1
        elif periods[index].price != float(price):
            raise TariffError(file, f"{at}.price", f"period {name!r} already has price "
                              f"{periods[index].price} in this season; one price per period")
        for m in minutes:
            if owner[m] != -1:
                raise TariffError(file, at, f"overlaps another period at "
                                  f"{m // 60:02d}:{m % 60:02d}")
            owner[m] = index
    if -1 in owner:
        m = owner.index(-1)
        raise TariffError(file, where, f"no period covers {m // 60:02d}:{m % 60:02d}; "
                          "the periods must cover the whole day")
    return tuple(periods), tuple(owner)


def _tiers(raw: Any, file: str) -> tuple[str, tuple[int, int], tuple[Tier, ...]]:
    if raw is None:
        return "", (1, 1), ()
    example = ('[tiers]\nbasis = "annual"\nyear_starts = "01-01"\n'
               'steps = [{ up_to = 2880, add = 0.0 }, { up_to = 4800, add = 0.05 }, '
               '{ add = 0.30 }]')
    if not isinstance(raw, dict):
        raise TariffError(file, "tiers", "must be a table", example)
    _only(raw, {"basis", "year_starts", "steps"}, file, "tiers")
    basis = raw.get("basis", "annual")
    if basis not in ("annual", "cycle"):
        raise TariffError(file, "tiers.basis", f"{basis!r} must be annual (cumulative over "
                          "the tier year) or cycle (each billing cycle on its own)")
    text = raw.get("year_starts", "01-01")
    m = _MONTH_DAY.match(text) if isinstance(text, str) else None
    if not m:
        raise TariffError(file, "tiers.year_starts", f"{text!r} is not a month-day MM-DD",
                          'year_starts = "01-01"')
    steps = raw.get("steps")
    if not isinstance(steps, list) or not steps:
        raise TariffError(file, "tiers.steps", "must list the steps", example)
    tiers = []
    last = 0.0
    for k, step in enumerate(steps):
        at = f"tiers.steps[{k}]"
        if not isinstance(step, dict):
            raise TariffError(file, at, "must be a table", example)
        _only(step, {"up_to", "add"}, file, at)
        up_to = step.get("up_to")
        final = k == len(steps) - 1
        if final and up_to is not None:
            raise TariffError(file, f"{at}.up_to", "the last step is open-ended: leave "
                              "up_to out so that no consumption falls beyond every step")
        if not final and (isinstance(up_to, bool) or not isinstance(up_to, (int, float))
                          or not math.isfinite(up_to) or up_to <= last):
            raise TariffError(file, f"{at}.up_to", f"must be a number of kWh above the "
                              f"previous step's {last:g}")
        add = step.get("add", 0.0)
        if isinstance(add, bool) or not isinstance(add, (int, float)) or not math.isfinite(add):
            raise TariffError(file, f"{at}.add", "must be a price per kWh", "add = 0.05")
        tiers.append(Tier(float(up_to) if up_to is not None else None, float(add)))
        last = float(up_to or last)
    return str(basis), (int(m.group(1)), int(m.group(2))), tuple(tiers)


def _minute(text: Any, file: str, key: str) -> int:
    m = _HHMM.match(text) if isinstance(text, str) else None
    if not m or (m.group(1) == "24" and m.group(2) != "00"):
        raise TariffError(file, key, f"{text!r} is not a local time HH:MM (24:00 ends a day)",
                          'from = "08:00"')
    return (int(m.group(1)) * 60 + int(m.group(2))) % 1440


def _only(table: dict[str, Any], known: Iterable[str], file: str, where: str) -> None:
    for key in table:
        if key not in known:
            raise TariffError(file, f"{where}.{key}" if where != "(top level)" else key,
                              f"unknown key; expected one of {', '.join(sorted(known))}")


def _get(table: dict[str, Any], key: str, kind: type | tuple[type, ...], file: str,
         prefix: str, default: Any) -> Any:
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "a number"
        raise TariffError(file, f"{prefix}{key}", f"must be {names}, got {value!r}")
    return value


class Tariffs:
    """Tariffs by name, from the shipped examples and the configured directories (a
    configured file of the same name wins)."""

    def __init__(self, dirs: Sequence[str] = ()) -> None:
        self.dirs = [SHIPPED, *(Path(d) for d in dirs)]
        self._loaded: dict[str, Tariff] = {}

    def names(self) -> list[str]:
        return sorted({p.stem for d in self.dirs if d.is_dir() for p in d.glob("*.toml")})

    def get(self, name: str) -> Tariff:
        if name not in self._loaded:
            found = [d / f"{name}.toml" for d in self.dirs if (d / f"{name}.toml").is_file()]
            if not found:
                raise UnknownTariff(
                    "collector.toml", "billing.tariff_dirs",
                    f"no tariff named {name!r} in {', '.join(map(str, self.dirs))} "
                    f"(known: {', '.join(self.names()) or 'none'})")
            self._loaded[name] = load_tariff(found[-1])
        return self._loaded[name]
