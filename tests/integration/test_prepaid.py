"""Prepaid end to end: consumption → balance → alert → trip over a real pty → top-up →
reconnect, on both stores; alerts once per crossing; no trip in the protected window;
alerts published on a real mosquitto."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
import pytest

from collector.billing.prepaid import Prepaid, event_payload
from collector.billing.switch import Dlt645Switch, MqttPublisher
from collector.billing.tariff import Tariffs
from collector.config.billing import PrepaidSettings
from collector.config.settings import MqttSettings
from model import Meter, MeterAssignment, PrepaidEvent, Reading, ServicePoint
from simulator.fleet import meter_address

TZ = ZoneInfo("Asia/Shanghai")
WED_10 = datetime(2026, 11, 18, 10, tzinfo=TZ).astimezone(UTC)
OPENED = WED_10 - timedelta(days=2)
PASSWORD_ENV = "COLLECTOR_TEST_METER_PASSWORD"


async def account_with_use(store: Any, kwh_per_slot: float = 1.0) -> None:
    await store.upsert_meters([Meter("m1", "dlt645", "bus1", meter_address(1))])
    await store.upsert_service_points([ServicePoint("sp1", "A1", "cn-residential", "S01")],
                                      [MeterAssignment("sp1", "m1")])
    await store.open_prepaid("A1", "sp1", OPENED)
    slots = int((WED_10 - OPENED) / timedelta(minutes=15))
    await store.write_readings([
        Reading("m1", "1-0:1.8.0", OPENED + k * timedelta(minutes=15),
                round(500 + k * kwh_per_slot, 4), "kWh") for k in range(slots + 1)])


class Recorder:
    def __init__(self) -> None:
        self.sent: list[PrepaidEvent] = []

    async def __call__(self, event: PrepaidEvent) -> None:
        self.sent.append(event)


async def test_consumption_alerts_trips_and_a_topup_reconnects_over_a_real_pty(
        store: Any, pty_bus_factory: Any) -> None:
    os.environ[PASSWORD_ENV] = "02000000"
    pty = await pty_bus_factory(meters=1)
    meter = pty.fleet.meters[1]
    await account_with_use(store)
    settings = PrepaidSettings(grace=timedelta(hours=6), password_env=PASSWORD_ENV)
    switch = Dlt645Switch({"bus1": pty.client},
                          {"m1": Meter("m1", "dlt645", "bus1", meter_address(1))}, settings, TZ)
    published = Recorder()
    prepaid = Prepaid(store, settings, TZ, Tariffs(), switch, published)
    assert await prepaid.topup("A1", 50.0, OPENED, "pay-1", "counter") is not None
    assert await prepaid.topup("A1", 50.0, OPENED, "pay-1", "counter") is None  # a repeat

    run = await prepaid.update(WED_10)
    (acct,) = await store.prepaid_accounts()
    peak, valley = 0.5583, 0.2883
    expected = 2 * (56 * peak + 40 * valley)  # two days of 1 kWh per 15 minutes
    assert run.charged == pytest.approx(expected, abs=0.01)
    assert acct.balance == pytest.approx(50 - expected, abs=0.01)
    assert [e.kind for e in run.alerts] == ["alert:low", "alert:zero"]
    assert acct.below_since == WED_10 and acct.relay == "closed"

    again = await prepaid.update(WED_10 + timedelta(minutes=15))
    assert again.alerts == [] and again.commands == []  # once per crossing

    night = await prepaid.update(WED_10 + timedelta(hours=12))  # 22:00, past the grace
    assert night.commands == [] and not meter.relay_open
    deferred = [e for e in await store.prepaid_events("A1") if e.kind == "trip-deferred"]
    assert "protected night window" in deferred[0].detail["why"]

    morning = await prepaid.update(WED_10 + timedelta(hours=24))
    assert [e.kind for e in morning.commands] == ["trip"]
    assert "at or below 0" in morning.commands[0].detail["reason"]
    assert meter.relay_open and await pty.client.read_relay_open(meter_address(1))
    assert (await store.prepaid_accounts())[0].relay == "open"

    await prepaid.topup("A1", 200.0, WED_10 + timedelta(hours=25), "pay-2", "app")
    back = await prepaid.update(WED_10 + timedelta(hours=25, minutes=15))
    assert [e.kind for e in back.commands] == ["reconnect"]
    assert not meter.relay_open and meter.commands == ["trip", "direct close"]
    (acct,) = await store.prepaid_accounts()
    assert acct.relay == "closed" and acct.below_since is None
    assert acct.balance == pytest.approx(250 - expected, abs=0.01)
    kinds = [e.kind for e in published.sent]
    assert kinds == ["topup", "alert:low", "alert:zero", "trip-deferred", "trip", "topup",
                     "reconnect"]
    assert all(e.published for e in await store.prepaid_events("A1") if e.kind in kinds)


async def test_a_wrong_password_never_trips_and_says_so(store: Any, pty_bus_factory: Any,
                                                        caplog: Any) -> None:
    os.environ[PASSWORD_ENV] = "02999999"
    pty = await pty_bus_factory(meters=1)
    await account_with_use(store)
    settings = PrepaidSettings(grace=timedelta(0), password_env=PASSWORD_ENV)
    switch = Dlt645Switch({"bus1": pty.client},
                          {"m1": Meter("m1", "dlt645", "bus1", meter_address(1))}, settings, TZ)
    prepaid = Prepaid(store, settings, TZ, Tariffs(), switch)
    run = await prepaid.update(WED_10)
    assert run.commands == [] and not pty.fleet.meters[1].relay_open
    assert "password error" in caplog.text
    assert (await store.prepaid_accounts())[0].relay == "closed"


async def test_no_trip_on_a_weekend_or_a_holiday(store: Any) -> None:
    await account_with_use(store)
    sent: list[str] = []

    async def switch(meter_id: str, action: str, reason: str) -> bool:
        sent.append(action)
        return True

    holiday = (WED_10 + timedelta(days=1)).astimezone(TZ).date()
    settings = PrepaidSettings(grace=timedelta(0), holidays=(holiday,))
    prepaid = Prepaid(store, settings, TZ, Tariffs(), switch)
    await prepaid.update(WED_10 + timedelta(days=1))  # Thursday, a holiday
    await prepaid.update(WED_10 + timedelta(days=3))  # Saturday
    assert sent == []
    why = [e.detail["why"] for e in await store.prepaid_events("A1")
           if e.kind == "trip-deferred"]
    assert why == ["not in a holiday", "not in a weekend"]
    await prepaid.update(WED_10 + timedelta(days=5))  # Monday 10:00
    assert sent == ["trip"]


@pytest.mark.mosquitto
async def test_alerts_are_published_on_mqtt_once(store: Any, broker: Any) -> None:
    await account_with_use(store)
    settings = MqttSettings(port=broker.port, username="collector",
                            password_env="COLLECTOR_TEST_MQTT_PASSWORD")
    prepaid = Prepaid(store, PrepaidSettings(), TZ, Tariffs(), None, MqttPublisher(settings))
    async with aiomqtt.Client("127.0.0.1", broker.port, username="collector",
                              password="secret") as sub:
        await sub.subscribe("mc/v1/prepaid/#", qos=1)
        await prepaid.update(WED_10)
        got = []
        async for message in sub.messages:
            got.append((str(message.topic), json.loads(bytes(message.payload))))
            if len(got) == 2:
                break
    assert [t for t, _ in got] == ["mc/v1/prepaid/A1/alert", "mc/v1/prepaid/A1/alert"]
    assert [p["kind"] for _, p in got] == ["alert:low", "alert:zero"]
    assert got[1][1]["balance"] < 0
    assert await prepaid.flush() == 0  # nothing left to publish
    assert set(event_payload(PrepaidEvent("A", WED_10, "x"))) >= {"v", "account", "kind"}


@pytest.mark.mosquitto
async def test_a_head_end_trips_and_reconnects_a_meter_behind_a_remote_gateway(
        broker: Any, tmp_path: Any, monkeypatch: Any) -> None:
    import asyncio

    from collector.acquisition.clock import SimulatedClock
    from collector.billing.switch import MqttSwitch
    from collector.config.settings import (
        BusConfig,
        CollectorSettings,
        Schedule,
        Settings,
        StorageSettings,
    )
    from collector.runtime.daemon import run_collector
    from simulator.fleet import FleetSpec, build_fleet
    from tests.integration.conftest import PASSWORD_ENV as MQTT_PASSWORD_ENV

    monkeypatch.setenv(PASSWORD_ENV, "02000000")
    mqtt = {"port": broker.port, "username": "collector", "password_env": MQTT_PASSWORD_ENV,
            "session_expiry_s": 60}
    clock = SimulatedClock(WED_10, speed=1)
    fleet = build_fleet(FleetSpec(meters=1, buses=1, tz=TZ), clock.now,
                        WED_10 - timedelta(days=1))
    (path,) = await fleet.start()
    gateway = Settings(
        source="(test)", collector=CollectorSettings(timezone="Asia/Shanghai",
                                                     gateway="gw-trip"),
        storage=StorageSettings(url=f"sqlite:///{tmp_path / 'gw.db'}"),
        buses=(BusConfig("bus1", path, baud=38400, latency_ms=10),),
        meters=(Meter("m1", "dlt645", "bus1", meter_address(1)),),
        schedules=(Schedule("daily", timedelta(days=1), ("1-0:1.8.0",)),),
        mqtt=MqttSettings(role="gateway", **mqtt),
        prepaid=PrepaidSettings(password_env=PASSWORD_ENV))
    task = asyncio.create_task(run_collector(gateway, clock=clock, handle_signals=False))
    switch = MqttSwitch(MqttSettings(role="headend", **mqtt), {"m1": "gw-trip"},
                        timeout_s=30, resend_s=1)
    try:
        assert await switch("m1", "trip", "balance -1.00 at or below 0 since 10:00")
        assert fleet.meters[1].relay_open
        assert await switch("m1", "reconnect", "balance 50.00 restored above 0")
        assert not fleet.meters[1].relay_open
        assert fleet.meters[1].commands == ["trip", "direct close"]
        assert not await MqttSwitch(MqttSettings(role="headend", **mqtt), {})(
            "m9", "trip", "no gateway of record")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await fleet.stop()


async def test_a_day_vee_holds_is_not_charged_until_it_is_settled(store: Any) -> None:
    from model import Verdict

    await account_with_use(store)
    prepaid = Prepaid(store, PrepaidSettings(), TZ, Tariffs())
    await prepaid.topup("A1", 500.0, OPENED, "pay-1", "counter")
    held = (OPENED + timedelta(days=1)).astimezone(TZ).date()
    await store.write_verdicts([Verdict("m1", held, "spike", False, {"kwh": 40.0})])
    first = await prepaid.update(WED_10)
    (acct,) = await store.prepaid_accounts()
    assert acct.charged_to == datetime(held.year, held.month, held.day, tzinfo=TZ)
    # Monday 10:00–24:00 only: 48 peak slots to 22:00, then 8 valley slots.
    assert first.charged == pytest.approx(48 * 0.5583 + 8 * 0.2883, abs=0.01)
    await store.write_verdicts([Verdict("m1", held, "spike", True, {})])  # settled
    await prepaid.update(WED_10)
    (acct,) = await store.prepaid_accounts()
    assert acct.charged_to == WED_10


async def test_a_span_of_several_slots_is_priced_slot_by_slot(store: Any) -> None:
    """Reads at 06:00 and 10:00 and none between: eight valley slots and eight peak
    slots, not sixteen at the price of the last one (issue 28)."""
    await store.upsert_meters([Meter("m1", "dlt645", "bus1", meter_address(1))])
    await store.upsert_service_points([ServicePoint("sp1", "A1", "cn-residential", "S01")],
                                      [MeterAssignment("sp1", "m1")])
    six = WED_10 - timedelta(hours=4)
    await store.open_prepaid("A1", "sp1", six)
    await store.write_readings([Reading("m1", "1-0:1.8.0", six, 500.0, "kWh"),
                                Reading("m1", "1-0:1.8.0", WED_10, 516.0, "kWh")])
    run = await Prepaid(store, PrepaidSettings(), TZ, Tariffs()).update(WED_10)
    assert run.charged == pytest.approx(8 * 0.2883 + 8 * 0.5583, abs=1e-4)


@pytest.mark.parametrize("amount", [float("inf"), 1e308, float("nan"), -5.0])
async def test_a_topup_that_is_no_real_amount_is_refused(store: Any, amount: float) -> None:
    await account_with_use(store)
    prepaid = Prepaid(store, PrepaidSettings(), TZ, Tariffs())
    with pytest.raises(ValueError, match="top-up"):
        await prepaid.topup("A1", amount, OPENED, "pay-x", "counter")
    (acct,) = await store.prepaid_accounts()
    assert acct.balance == 0
