"""Prepaid accounts (远程费控): the balance after every collection cycle, alerts once
per crossing, and remote trip and reconnect with the reasons logged.

The balance is top-ups minus charges, and a charge is the cost of validated interval
reads since the last charge, priced slot by slot by the service point's tariff (its
period price and the tier adder on the tier year's cumulative consumption). Every
change is a ledger row whose reference makes a rerun harmless. Trips follow the
utility's rules: only after the balance has stayed at or below the threshold past the
grace period, never inside the protected window (nights, weekends, holidays), and never
without a reason written down.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from collector.acquisition.clock import local_midnight
from collector.billing.cycles import tariff_on
from collector.billing.reads import TOTAL, held_days
from collector.billing.run import BillStore
from collector.billing.tariff import Tariffs
from collector.config.billing import PrepaidSettings
from collector.vee.service_points import register_delta
from model import MeterAssignment, PrepaidAccount, PrepaidEvent, ServicePoint

log = logging.getLogger(__name__)

ALERT_LOW = "alert:low"
ALERT_ZERO = "alert:zero"
TRIP = "trip"
RECONNECT = "reconnect"
DEFERRED = "trip-deferred"
PUBLISHED_KINDS = frozenset({ALERT_LOW, ALERT_ZERO, TRIP, RECONNECT, DEFERRED, "topup"})
MAX_TOPUP = 1_000_000.0
"""The largest single top-up: past it a typo (or inf, or 1e308) would make the balance
meaningless, and no household pays that much at a counter."""


class Switch(Protocol):
    """Sends a trip or a reconnect to a meter; True when the meter confirmed it."""

    async def __call__(self, meter_id: str, action: str, reason: str) -> bool: ...


class Publisher(Protocol):
    async def __call__(self, event: PrepaidEvent) -> None: ...


@dataclass
class PrepaidRun:
    accounts: int = 0
    charged: float = 0.0
    alerts: list[PrepaidEvent] = field(default_factory=list)
    commands: list[PrepaidEvent] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"Prepaid: {self.accounts} accounts, {self.charged:.2f} charged, "
                f"{len(self.alerts)} alerts")
        for e in self.alerts + self.commands:
            text += f"; {e.account} {e.kind} at balance {e.balance:.2f}"
        return text


def protected(now: datetime, settings: PrepaidSettings, tz: ZoneInfo) -> str:
    """Why no trip may be sent now ('' when one may)."""
    local = now.astimezone(tz)
    if local.date() in settings.holidays:
        return "a holiday"
    if settings.protected_weekends and local.weekday() >= 5:
        return "a weekend"
    t = timedelta(hours=local.hour, minutes=local.minute)
    a, b = settings.protected_from, settings.protected_to
    inside = (a <= t < b) if a < b else (t >= a or t < b)
    return "the protected night window" if inside and a != b else ""


class Prepaid:
    def __init__(self, store: BillStore, settings: PrepaidSettings, tz: ZoneInfo,
                 tariffs: Tariffs, switch: Switch | None = None,
                 publish: Publisher | None = None, step: timedelta = timedelta(minutes=15),
                 register_max: float = 999999.99, resolution: float = 0.01) -> None:
        self.store = store
        self.settings = settings
        self.tz = tz
        self.tariffs = tariffs
        self.switch = switch
        self.publish = publish
        self.step = step
        self.register_max = register_max
        self.resolution = resolution

    async def topup(self, account: str, amount: float, at: datetime, reference: str,
                    by: str) -> PrepaidEvent | None:
        """Record a top-up; the same reference twice is one top-up. None: a repeat."""
        if not math.isfinite(amount) or amount <= 0:
            raise ValueError(f"a top-up must be a positive amount, got {amount}")
        if amount > MAX_TOPUP:
            raise ValueError(f"a top-up of {amount:g} is more than {MAX_TOPUP:,.0f}: "
                             "split it, or check the amount")
        found = await self.store.prepaid_accounts(account)
        if not found:
            raise ValueError(f"no prepaid account {account!r}; open it first")
        acct = found[0]
        written = await self.store.post_prepaid(acct, [PrepaidEvent(
            account, at, "topup", amount, detail={"by": by}, reference=reference)])
        return written[0] if written else None

    async def update(self, now: datetime) -> PrepaidRun:
        run = PrepaidRun()
        points = {p.id: p for p in await self.store.service_points()}
        for acct in await self.store.prepaid_accounts():
            run.accounts += 1
            sp = points.get(acct.service_point_id)
            if sp is None:
                log.warning("prepaid account %s: service point %s is unknown", acct.account,
                            acct.service_point_id)
                continue
            await self._update(acct, sp, now, run)
        await self.flush()
        return run

    async def _update(self, acct: PrepaidAccount, sp: ServicePoint, now: datetime,
                      run: PrepaidRun) -> None:
        events: list[PrepaidEvent] = []
        assignments = await self.store.assignments(sp.id) or [MeterAssignment(sp.id, sp.id)]
        on_now = [a for a in assignments if a.covers(now)]
        meter = on_now[-1].meter_id if on_now else sp.id
        charge, acct = await self._charge(acct, sp, assignments, now)
        if charge is not None:
            events.append(charge)
            run.charged += charge.amount
        balance = acct.balance - (charge.amount if charge else 0.0)
        daily = await self._average_daily_cost(acct, charge, now)
        state = dict(acct.alert_state)
        for kind, beyond, what in (
                (ALERT_LOW, daily > 0 and balance < self.settings.alert_days * daily,
                 f"balance {balance:.2f} covers less than {self.settings.alert_days:g} days "
                 f"at {daily:.2f} a day"),
                (ALERT_ZERO, balance <= 0, f"balance {balance:.2f} is used up")):
            if beyond and not state.get(kind):
                e = PrepaidEvent(acct.account, now, kind, 0.0, balance,
                                 {"why": what, "daily_cost": round(daily, 4)},
                                 reference=now.isoformat())
                events.append(e)
                run.alerts.append(e)
            state[kind] = beyond
        below = balance <= self.settings.disconnect_below
        below_since = (acct.below_since or now) if below else None
        relay = acct.relay
        if (relay == "closed" and below_since is not None
                and now - below_since >= self.settings.grace):
            why_not = protected(now, self.settings, self.tz)
            reason = (f"balance {balance:.2f} at or below {self.settings.disconnect_below:g} "
                      f"since {below_since.isoformat()} (grace "
                      f"{self.settings.grace.total_seconds() / 3600:g} h)")
            if why_not:
                hour = now.astimezone(self.tz).strftime("%Y-%m-%d")
                events.append(PrepaidEvent(acct.account, now, DEFERRED, 0.0, balance,
                                           {"why": f"not in {why_not}", "reason": reason},
                                           reference=hour))
            elif await self._send(meter, TRIP, reason, acct):
                relay = "open"
                events.append(PrepaidEvent(acct.account, now, TRIP, 0.0, balance,
                                           {"meter": meter, "reason": reason},
                                           reference=now.isoformat()))
        elif relay == "open" and not below:
            reason = f"balance {balance:.2f} restored above {self.settings.disconnect_below:g}"
            if await self._send(meter, RECONNECT, reason, acct):
                relay = "closed"
                events.append(PrepaidEvent(acct.account, now, RECONNECT, 0.0, balance,
                                           {"meter": meter, "reason": reason},
                                           reference=now.isoformat()))
        run.commands += [e for e in events if e.kind in (TRIP, RECONNECT)]
        updated = replace(acct, relay=relay, below_since=below_since, alert_state=state)
        await self.store.post_prepaid(updated, events)

    async def _send(self, meter: str, action: str, reason: str, acct: PrepaidAccount) -> bool:
        if self.switch is None:
            log.warning("prepaid %s: %s due (%s) but no switch reaches meter %s",
                        acct.account, action, reason, meter)
            return False
        log.info("prepaid %s: %s meter %s: %s", acct.account, action, meter, reason)
        return await self.switch(meter, action, reason)

    async def _charge(self, acct: PrepaidAccount, sp: ServicePoint,
                      assignments: Sequence[MeterAssignment], now: datetime
                      ) -> tuple[PrepaidEvent | None, PrepaidAccount]:
        changes = await self.store.tariff_changes(sp.id)
        kwh_total = 0.0
        amount = 0.0
        by_period: dict[str, float] = {}
        end = acct.charged_to
        state = dict(acct.alert_state)
        for a in assignments:
            lo = max(acct.charged_to, a.start) if a.start else acct.charged_to
            hi = min(now, a.end) if a.end else now
            hi = min(hi, await self._validated_until(a.meter_id, lo, hi))
            if hi <= lo:
                continue
            values = [v for v in await self.store.current_values(TOTAL, lo, hi, [a.meter_id])
                      if v.value is not None]
            for prev, cur in itertools.pairwise(values):
                if prev.value is None or cur.value is None:
                    continue
                kwh = register_delta(prev.value, cur.value, self.register_max,
                                     self.resolution) * a.multiplier
                # A span of several slots (null estimates between) is priced slot by
                # slot, its energy shared evenly: one slot's price for all of it charged
                # a night's use at the morning's peak price.
                n = max(1, round((cur.ts - prev.ts) / self.step))
                for j in range(n):
                    local = (prev.ts + j * (cur.ts - prev.ts) / n).astimezone(self.tz)
                    part = kwh / n
                    tariff = self.tariffs.get(tariff_on(local.date(), sp.tariff, changes))
                    year = tariff.tier_year_of(local.date()).isoformat()
                    if state.get("tier_year") != year:
                        state["tier_year"], state["tier_kwh"] = year, 0.0
                    before = float(state.get("tier_kwh", 0.0))
                    adder = sum(e * add for _, e, add in tariff.tier_charges(before, part))
                    state["tier_kwh"] = before + part
                    period = tariff.period_at(local)
                    amount += part * period.price + adder
                    by_period[period.name] = by_period.get(period.name, 0.0) + part
                kwh_total += kwh
                end = max(end, cur.ts)
        if end <= acct.charged_to:
            return None, acct
        event = PrepaidEvent(acct.account, end, "charge", round(amount, 4), 0.0,
                             {"from": acct.charged_to.isoformat(), "to": end.isoformat(),
                              "kwh": round(kwh_total, 4),
                              "by_period": {k: round(v, 4) for k, v in by_period.items()}},
                             reference=end.isoformat())
        return event, replace(acct, charged_to=end, alert_state=state)

    async def _validated_until(self, meter_id: str, lo: datetime, hi: datetime) -> datetime:
        """The start of the first local day from lo's on that VEE holds, or hi: a held
        day's reads (a spike, a register gone backward) are not charged until VEE, or a
        person, has settled them, and nothing after them is charged before they are."""
        first, last = lo.astimezone(self.tz).date(), hi.astimezone(self.tz).date()
        held = held_days(await self.store.verdicts(first, last, [meter_id]))
        days = [day for day, _ in held.get(meter_id, [])]
        return max(lo, local_midnight(min(days), self.tz)) if days else hi

    async def _average_daily_cost(self, acct: PrepaidAccount, charge: PrepaidEvent | None,
                                  now: datetime) -> float:
        since = now - timedelta(days=7)
        charges = [e for e in await self.store.prepaid_events(acct.account)
                   if e.kind == "charge" and e.ts > since]
        if charge is not None:
            charges.append(charge)
        if not charges:
            return 0.0
        first = min(datetime.fromisoformat(str(e.detail["from"])) for e in charges)
        days = max((now - max(first, since)).total_seconds() / 86400, 1 / 24)
        return sum(e.amount for e in charges) / days

    async def flush(self) -> int:
        """Hand unpublished alerts and commands to the publisher; mark what went out."""
        if self.publish is None:
            return 0
        sent = []
        for e in await self.store.prepaid_events(unpublished_only=True):
            if e.kind not in PUBLISHED_KINDS:
                continue
            await self.publish(e)
            sent.append(e.id)
        if sent:
            await self.store.mark_published(sent)
        return len(sent)


def event_payload(e: PrepaidEvent) -> dict[str, Any]:
    """The MQTT payload of a prepaid event (docs/mqtt.md)."""
    return {"v": 1, "account": e.account, "kind": e.kind, "ts": e.ts.isoformat(),
            "balance": round(e.balance, 2), "amount": round(e.amount, 2), "detail": e.detail,
            "id": e.id}


def topic(prefix: str, e: PrepaidEvent) -> str:
    return f"{prefix}/prepaid/{e.account}/{e.kind.split(':')[0]}"
