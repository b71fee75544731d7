"""`collector bill run`: one cycle's bills for every service point read in it.

The run loads in bulk (register reads at every boundary, interval series by chunk of
meters, VEE's held days, the history bills) and then builds each bill in memory, so
the database sees a few dozen queries whatever the number of service points. A rerun
writes nothing for an unchanged bill; a changed bill not yet released is superseded;
a changed released bill is reissued only as a correction with its reason.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from collector.acquisition.clock import local_midnight
from collector.billing import review
from collector.billing.charges import price_part
from collector.billing.cycles import Cycle, Part, split
from collector.billing.determinants import Energy, part_energy
from collector.billing.reads import Reads, held_days, load_intervals, load_registers
from collector.billing.tariff import Tariff, Tariffs, UnknownTariff
from collector.config.billing import BillingSettings
from collector.config.vee import VeeSettings
from collector.errors import CollectorError
from model import Bill, BillStatus, Hold, MeterAssignment, Quality, ServicePoint, TariffChange
from storage.billing import BillingStore
from storage.versions import ValidatedStore

REVIEWER = "review"
"""released_by of a bill that passed review without a person."""


class BillStore(ValidatedStore, BillingStore, Protocol):
    """Both built-in stores."""


@dataclass
class BillRun:
    cycle: str
    points: int = 0
    released: int = 0
    held: int = 0
    held_by: Counter[str] = field(default_factory=Counter)
    unchanged: int = 0
    refused: list[str] = field(default_factory=list)
    bills: list[Bill] = field(default_factory=list)

    def summary(self) -> str:
        why = ", ".join(f"{code} {n}" for code, n in self.held_by.most_common())
        text = (f"Bills {self.cycle}: {self.points} service points: {self.released} released, "
                f"{self.held} held" + (f" ({why})" if why else ""))
        if self.unchanged:
            text += f"; {self.unchanged} unchanged since the last run"
        if self.refused:
            text += (f"; {len(self.refused)} released bills differ from their inputs now "
                     "(rerun with --correct REASON to reissue them)")
        return text


class NoReads(CollectorError):
    """A cycle with no reads for any service point: a mistyped cycle or an empty store,
    not a thousand bills to hold."""


class Biller:
    def __init__(self, store: BillStore, settings: BillingSettings, vee: VeeSettings,
                 tz: ZoneInfo, tariffs: Tariffs | None = None) -> None:
        self.store = store
        self.settings = settings
        self.vee = vee
        self.tz = tz
        self.tariffs = tariffs or Tariffs(settings.tariff_dirs)
        self.step = timedelta(minutes=vee.interval_minutes)
        self._splits: dict[tuple[date, date, str], list[Part]] = {}
        self._trailing_names: dict[str, list[str]] = {}

    def reading_day(self, sp: ServicePoint) -> int:
        return self.settings.segments.get(sp.segment, self.settings.default_reading_day)

    async def run(self, cycle: Cycle, segment: str | None = None, correction: str = "",
                  points: Sequence[str] | None = None) -> BillRun:
        sps = [p for p in await self.store.service_points()
               if (segment is None or p.segment == segment)
               and (points is None or p.id in points)]
        out = BillRun(cycle.name, len(sps))
        if not sps:
            return out
        changes: dict[str, list[TariffChange]] = defaultdict(list)
        for c in await self.store.tariff_changes():
            changes[c.service_point_id].append(c)
        assignments: dict[str, list[MeterAssignment]] = defaultdict(list)
        for a in await self.store.assignments():
            assignments[a.service_point_id].append(a)
        plans = {}
        wanted: dict[datetime, set[str]] = defaultdict(set)
        for sp in sps:
            first, end = cycle.span(self.reading_day(sp))
            parts, problem = self._parts(sp, first, end, changes[sp.id])
            plans[sp.id] = (first, end, parts, problem)
            own = {a.meter_id for a in assignments.get(sp.id) or [MeterAssignment(sp.id, sp.id)]}
            for at in {local_midnight(p.first, self.tz) for p in parts} | {
                    local_midnight(end, self.tz)}:
                wanted[at] |= own
        reads = Reads(registers=await load_registers(self.store, wanted))
        meters = sorted(set().union(*wanted.values()))
        lo, hi = min(wanted), max(wanted)
        reads.intervals = await load_intervals(self.store, meters, lo, hi)
        if not reads.registers and not any(len(chunk) for chunk in reads.intervals):
            raise NoReads(
                f"cycle {cycle.name}: no register read at all for the {len(sps)} service "
                f"points from {lo.astimezone(self.tz):%Y-%m-%d} to "
                f"{hi.astimezone(self.tz):%Y-%m-%d}; check --cycle, or collect first. "
                "No bill was written.")
        first_day = min(f for f, _, _, _ in plans.values())
        last_day = max(e for _, e, _, _ in plans.values()) - timedelta(days=1)
        reads.held = held_days(await self.store.verdicts(first_day, last_day, meters))
        history = await self._history(cycle, [sp.id for sp in sps])
        bills = []
        for sp in sps:
            first, end, parts, problem = plans[sp.id]
            bill = self._bill(sp, cycle, first, end, parts, problem,
                              assignments.get(sp.id) or [MeterAssignment(sp.id, sp.id)],
                              changes[sp.id], reads, history.get(sp.id, {}))
            bills.append(bill)
        for bill in bills:
            if bill.status is BillStatus.HELD:
                out.held += 1
                out.held_by.update({h.code for h in bill.holds})
            else:
                out.released += 1
        for i in range(0, len(bills), 5000):
            done = await self.store.write_bills(bills[i:i + 5000], correction)
            out.unchanged += done.unchanged
            out.refused += done.refused
            out.bills += done.written
        return out

    def _parts(self, sp: ServicePoint, first: date, end: date,
               changes: Sequence[TariffChange]) -> tuple[list[Part], Hold | None]:
        names = {sp.tariff, *(c.tariff for c in changes)} - {""}
        known: dict[str, Tariff] = {}
        problem = None
        for name in sorted(names):
            try:
                known[name] = self.tariffs.get(name)
            except UnknownTariff as exc:
                # A file that is there but cannot be read (bad TOML, an invalid price)
                # stops the run instead: every bill on it would be wrong or held.
                problem = Hold("tariff", str(exc))
        if not sp.tariff:
            problem = Hold("tariff", f"service point {sp.id} has no tariff")
        key = (first, end, sp.tariff)
        if changes:
            parts = split(first, end, sp.tariff, changes, known)
        elif key in self._splits:
            parts = self._splits[key]
        else:
            parts = self._splits[key] = split(first, end, sp.tariff, changes, known)
        for p in parts:
            t = known.get(p.tariff)
            if t is not None and not (t.valid_on(p.first) and t.valid_on(p.end - timedelta(1))):
                problem = Hold("tariff", f"tariff {p.tariff} is not valid from {p.first} to "
                                         f"{p.end} (valid {t.valid_from} – {t.valid_to or '…'})")
        return parts, problem

    async def _history(self, cycle: Cycle, ids: list[str]) -> dict[str, dict[str, Bill]]:
        wanted = {cycle.shifted(n).name for n in range(1, self.settings.review_months + 1)}
        wanted.add(cycle.last_year().name)
        out: dict[str, dict[str, Bill]] = defaultdict(dict)
        for name in sorted(wanted):
            for sp, b in (await self.store.latest_bills(name, ids)).items():
                out[sp][name] = b
        return out

    def _bill(self, sp: ServicePoint, cycle: Cycle, first: date, end: date, parts: list[Part],
              problem: Hold | None, assignments: list[MeterAssignment],
              changes: list[TariffChange], reads: Reads, history: dict[str, Bill]) -> Bill:
        lo, hi = local_midnight(first, self.tz), local_midnight(end, self.tz)
        cycle_days = (end - first).days
        holds: list[Hold] = [problem] if problem else []
        docs: list[dict[str, Any]] = []
        kwh: float | None = 0.0
        amount: float | None = 0.0
        currency = ""
        energies: list[Energy] = []
        tier_year_kwh = self._tier_history(history, cycle)
        priced: list[tuple[Part, Tariff, Energy]] = []
        for part in parts:
            doc: dict[str, Any] = {"from": part.first.isoformat(), "to": part.end.isoformat(),
                                   "tariff": part.tariff, "why": part.why}
            docs.append(doc)
            if problem is not None:
                kwh = amount = None
                continue
            tariff = self.tariffs.get(part.tariff)
            currency = tariff.currency
            e = part_energy(sp.id, local_midnight(part.first, self.tz),
                            local_midnight(part.end, self.tz), tariff, assignments, reads,
                            self.tz, self.settings, self.step, self.vee.register_max,
                            self.vee.register_resolution)
            energies.append(e)
            priced.append((part, tariff, e))
            holds += e.holds
            doc.update(meters=e.meters, kwh=e.kwh, tou=e.tou, tou_source=e.tou_source)
            if e.tou_check:
                doc["tou_check"] = e.tou_check
            if e.demand_kw is not None and e.demand_at is not None:
                doc["demand"] = {"kw": round(e.demand_kw, 3), "at": e.demand_at.isoformat(),
                                 "estimated": e.demand_estimated}
        whole = bool(priced) and priced[-1][1].demand_split == "whole"
        cycle_max = max((e.demand_kw for _, _, e in priced if e.demand_kw is not None),
                        default=None)
        for n, (part, tariff, e) in enumerate(priced):
            doc = docs[n]
            if e.kwh is None or kwh is None or amount is None or not e.tou:
                kwh = amount = None
                continue
            year = tariff.tier_year_of(part.first) if tariff.tier_basis == "annual" else None
            before = tier_year_kwh.get(year, 0.0) if year else 0.0
            if tariff.tiers:
                doc["tier_year"] = year.isoformat() if year else "this cycle"
                doc["tier_before"] = round(before, 4)
            share = (part.end - part.first).days / cycle_days
            # 'whole': the cycle's maximum, once, on the last part at its tariff's price.
            kw, kw_share = ((cycle_max, 1.0) if n == len(priced) - 1 else (None, 0.0)
                            ) if whole else (e.demand_kw, share)
            lines, part_amount = price_part(tariff, part.first, e.kwh, e.tou, before, kw,
                                            share, kw_share)
            if year:
                tier_year_kwh[year] = before + e.kwh
            doc.update(charges=lines, amount=part_amount)
            kwh += e.kwh
            amount = round(amount + part_amount, 2)
        held = reads.held
        for a in assignments:
            for day, rules in held.get(a.meter_id, []):
                if first <= day < end and a.covers(local_midnight(day, self.tz)):
                    holds.append(Hold("vee", f"meter {a.meter_id} is held by VEE on {day} "
                                             f"({', '.join(rules)})"))
        slots = sum(e.slots for e in energies)
        est_slots = sum(e.estimated_slots for e in energies)
        methods: Counter[str] = Counter()
        for e in energies:
            methods.update(e.methods)
        used = [r for e in energies for r in e.reads]
        worst = min((r.quality for r in used), key=lambda q: q.rank, default=Quality.NULL)
        if est_slots and worst is Quality.ACTUAL:
            worst = Quality.ESTIMATED
        reads_estimated = sum(r.quality is not Quality.ACTUAL for r in used)
        holds += review.changes(lo, hi, first, end, assignments, changes)
        holds += review.estimated(slots, est_slots, methods, reads_estimated, self.settings)
        trailing = [history[name] for name in self._trailing(cycle) if name in history]
        holds += review.review(kwh, cycle_days, history.get(cycle.last_year().name), trailing,
                               self.settings)
        demand = max((e for e in energies if e.demand_kw is not None),
                     key=lambda e: e.demand_kw or 0.0, default=None)
        determinants: dict[str, Any] = {
            "service_point": sp.id, "account": sp.account, "segment": sp.segment,
            "reading_day": self.reading_day(sp) if cycle.monthly else None,
            "from": first.isoformat(), "to": end.isoformat(), "timezone": str(self.tz),
            "parts": docs, "kwh": None if kwh is None else round(kwh, 4), "amount": amount,
            "currency": currency,
            "quality": {"bill": str(worst), "reads_estimated": reads_estimated,
                        "intervals": slots, "intervals_estimated": est_slots,
                        "methods": dict(sorted(methods.items()))},
        }
        if demand is not None and demand.demand_at is not None:
            determinants["max_demand"] = {"kw": round(demand.demand_kw or 0.0, 3),
                                          "at": demand.demand_at.isoformat()}
        unique = list(dict.fromkeys(holds))
        return Bill(sp.id, cycle.name, sp.segment, lo, hi,
                    None if kwh is None else round(kwh, 4), amount, currency, str(worst),
                    tuple(unique), determinants,
                    BillStatus.HELD if unique else BillStatus.RELEASED,
                    released_by="" if unique else REVIEWER)

    def _trailing(self, cycle: Cycle) -> list[str]:
        """The names of the cycles before this one that review compares it with."""
        found = self._trailing_names.get(cycle.name)
        if found is None:
            found = self._trailing_names[cycle.name] = [
                cycle.shifted(n).name for n in range(1, self.settings.review_months + 1)]
        return found

    def _tier_history(self, history: dict[str, Bill], cycle: Cycle) -> dict[date, float]:
        """kWh already billed in each tier year, from the earlier cycles' bills."""
        out: dict[date, float] = defaultdict(float)
        for name, b in history.items():
            if name >= cycle.name:
                continue
            for part in b.determinants.get("parts", []):
                year = part.get("tier_year")
                if year and year != "this cycle" and part.get("kwh") is not None:
                    out[date.fromisoformat(year)] += float(part["kwh"])
        return out


def biller_for(settings: Any, store: BillStore) -> Biller:
    """A Biller from collector.toml's settings (config.settings.Settings)."""
    return Biller(store, settings.billing, settings.vee, settings.collector.tz)
