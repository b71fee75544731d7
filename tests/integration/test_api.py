"""The HTTP API on both stores, through its ASGI app: tokens and scopes, cursor paging,
CSV, problem+json errors, injection-like parameters, audited writes and the exports."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from nemreader import read_nem_file

from collector.api.app import create_app
from collector.config.settings import CollectorSettings, Settings
from model import (
    Flag,
    Meter,
    MeterAssignment,
    Quality,
    Reading,
    ServicePoint,
    ValueVersion,
)

TZ = ZoneInfo("Europe/Berlin")
DST_END = date(2026, 10, 25)  # a 25-hour day in Berlin
START = datetime(2026, 10, 24, tzinfo=TZ).astimezone(UTC)
STEP = timedelta(minutes=15)
SLOTS = int(timedelta(hours=73) / STEP)  # 24 Oct 00:00 to 27 Oct 00:00 local, 73 h


SAME_SITE = {"Origin": "http://test"}
"""What a browser sends with a form post from this site's own page."""


async def seed(store: Any) -> None:
    await store.upsert_meters([Meter("m1", "dlt645", "bus1", "000000000001", area="T1"),
                               Meter("m2", "dlt645", "bus1", "000000000002", area="T1")])
    await store.upsert_service_points([ServicePoint("sp1", "A1", "cn-residential", "S01",
                                                    "T1")], [MeterAssignment("sp1", "m1")])
    await store.write_readings([Reading(m, "1-0:1.8.0", START + k * STEP, 1000.0 + k, "kWh")
                                for m in ("m1", "m2") for k in range(SLOTS + 1) if k != 40])
    await store.write_versions([ValueVersion("m1", "1-0:1.8.0", START + 40 * STEP, 1040.0,
                                             Quality.ESTIMATED, "17", "79", "vee:estimate")])
    await store.raise_flags([Flag("m2", "clock_drift", "warning", START, START + STEP,
                                  {"offset_s": 95}, "T1")])
    await store.open_prepaid("P1", "sp1", START)


@pytest.fixture
async def api(store: Any) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    await seed(store)
    tokens = {scope: await store.create_token(f"t-{scope}", [scope])
              for scope in ("read", "billing", "write", "admin")}
    settings = Settings(source="(test)", collector=CollectorSettings(timezone=str(TZ)))
    app = create_app(settings, store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as client:
        yield client, tokens


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_no_endpoint_but_healthz_answers_without_a_valid_token(
        api: Any, store: Any) -> None:
    client, tokens = api
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    none = await client.get("/v1/meters")
    assert none.status_code == 401 and none.headers["content-type"] == "application/problem+json"
    assert none.json()["title"] == "Authentication required"
    bad = await client.get("/v1/meters", headers=auth("mc_not-a-token"))
    assert bad.status_code == 401 and bad.json()["detail"] == "unknown or revoked token"
    assert (await client.get("/v1/meters", headers=auth(tokens["read"]))).status_code == 200
    assert await store.revoke_token("t-read")
    assert (await client.get("/v1/meters", headers=auth(tokens["read"]))).status_code == 401
    wrong = await client.get("/v1/bills", headers=auth(tokens["write"]))
    assert wrong.status_code == 403 and "'billing' scope" in wrong.json()["detail"]
    no_write = await client.post("/v1/prepaid/P1/topups", json={"amount": 5, "reference": "x"},
                                 headers=auth(tokens["billing"]))
    assert no_write.status_code == 403
    assert (await client.get("/v1/tokens", headers=auth(tokens["billing"]))).status_code == 403
    listed = await client.get("/v1/tokens", headers=auth(tokens["admin"]))
    assert {t["name"] for t in listed.json()["items"]} == {"t-read", "t-billing", "t-write",
                                                           "t-admin"}
    assert "digest" not in listed.text and tokens["admin"] not in listed.text


async def test_readings_come_page_by_page_in_a_stable_order_and_none_is_lost(
        api: Any, store: Any) -> None:
    client, tokens = api
    params: dict[str, Any] = {"from": START.isoformat(), "to": (START + 300 * STEP).isoformat(),
                              "limit": 37}
    seen: list[tuple[str, int]] = []
    while True:
        page = (await client.get("/v1/meters/m1/readings", params=params,
                                 headers=auth(tokens["read"]))).json()
        seen += [(i["ts"], i["version"]) for i in page["items"]]
        assert len(page["items"]) <= 37
        if not page["next"]:
            break
        params["cursor"] = page["next"]
    want = await store.current_values("1-0:1.8.0", START, START + 300 * STEP, ["m1"])
    assert seen == [(v.ts.isoformat(), v.version) for v in want]
    assert len(seen) == SLOTS + 1  # every slot there is, the estimate included
    every = (await client.get("/v1/meters/m1/readings", headers=auth(tokens["read"]), params={
        "from": (START + 39 * STEP).isoformat(), "to": (START + 41 * STEP).isoformat(),
        "version": "all"})).json()["items"]
    assert [(i["version"], i["quality"], i["method"]) for i in every] == [
        (0, "A", ""), (1, "E", "17"), (0, "A", "")]
    raw = (await client.get("/v1/meters/m1/readings", headers=auth(tokens["read"]), params={
        "from": (START + 39 * STEP).isoformat(), "to": (START + 41 * STEP).isoformat(),
        "version": "raw"})).json()["items"]
    assert [i["ts"] for i in raw] == [(START + k * STEP).isoformat() for k in (39, 41)]


async def test_a_table_comes_as_csv_when_asked(api: Any) -> None:
    client, tokens = api
    got = await client.get("/v1/meters/m1/readings", params={
        "from": START.isoformat(), "to": (START + 4 * STEP).isoformat()},
        headers={**auth(tokens["read"]), "Accept": "text/csv"})
    assert got.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(got.text)))
    assert rows[0][:4] == ["meter", "ts", "value", "unit"] and len(rows) == 6


async def test_daily_and_monthly_consumption_follow_the_local_day_dst_included(
        api: Any) -> None:
    client, tokens = api
    got = (await client.get("/v1/service-points/sp1/consumption", headers=auth(tokens["read"]),
                            params={"from": "2026-10-24", "to": "2026-10-26"})).json()
    assert [(i["period"], i["kwh"]) for i in got["items"]] == [
        ("2026-10-24", 96.0), ("2026-10-25", 100.0), ("2026-10-26", 96.0)]
    month = (await client.get("/v1/service-points/sp1/consumption",
                              headers=auth(tokens["read"]),
                              params={"from": "2026-10-24", "to": "2026-10-26",
                                      "by": "month"})).json()
    assert month["items"] == [{"period": "2026-10", "kwh": 292.0}]
    meter = (await client.get("/v1/meters/m2/consumption", headers=auth(tokens["read"]),
                              params={"from": "2026-10-25", "to": "2026-10-25"})).json()
    assert meter["items"] == [{"period": "2026-10-25", "kwh": 100.0}]


async def test_bad_parameters_get_a_422_problem_and_injection_is_a_plain_value(
        api: Any, store: Any) -> None:
    client, tokens = api
    read = auth(tokens["read"])
    naive = await client.get("/v1/meters/m1/readings", headers=read,
                             params={"from": "2026-10-24T00:00:00", "to": START.isoformat()})
    assert naive.status_code == 422 and "give the offset" in naive.json()["detail"]
    assert naive.headers["content-type"] == "application/problem+json"
    quantity = await client.get("/v1/meters/m1/readings", headers=read, params={
        "from": START.isoformat(), "to": START.isoformat(), "quantity": "1-0:1.8.0' OR 1=1"})
    assert quantity.status_code == 422 and "not an OBIS code" in quantity.json()["detail"]
    limit = await client.get("/v1/meters/m1/readings", headers=read, params={
        "from": START.isoformat(), "to": START.isoformat(), "limit": "lots"})
    assert limit.status_code == 422 and "limit" in limit.json()["detail"]
    assert "Traceback" not in limit.text
    cursor = await client.get("/v1/meters/m1/readings", headers=read, params={
        "from": START.isoformat(), "to": START.isoformat(), "cursor": "'; DROP TABLE x"})
    assert cursor.status_code == 422
    before = await store.count_readings()
    sly = await client.get("/v1/meters/m1'; DROP TABLE readings; --/readings", headers=read,
                           params={"from": START.isoformat(), "to": START.isoformat()})
    assert sly.status_code == 200 and sly.json()["items"] == []
    flags = await client.get("/v1/flags", headers=read, params={"kind": "' OR '1'='1"})
    assert flags.json()["items"] == []
    assert (await client.get("/v1/meters/nobody", headers=read)).status_code == 404
    assert await store.count_readings() == before


async def test_every_write_is_in_the_audit_trail_with_the_tokens_name(
        api: Any, store: Any) -> None:
    client, tokens = api
    write = auth(tokens["write"])
    clerk = auth(await store.create_token("t-clerk", ["billing", "write"]))
    first = await client.post("/v1/prepaid/P1/topups", headers=clerk,
                              json={"amount": 20.0, "reference": "pay-9"})
    assert first.status_code == 201 and first.json()["repeat"] is False
    again = await client.post("/v1/prepaid/P1/topups", headers=clerk,
                              json={"amount": 20.0, "reference": "pay-9"})
    assert again.json()["repeat"] is True
    refused = await client.post("/v1/prepaid/P1/topups", headers=clerk,
                                json={"amount": -5, "reference": "pay-10"})
    assert refused.status_code == 422
    edit = await client.post("/v1/vee/edits", headers=write, json={
        "meter": "m2", "from": (START + STEP).isoformat(), "to": (START + STEP).isoformat(),
        "value": 1001.5, "reason": "0", "note": "site visit"})
    assert edit.status_code == 201 and edit.json()["written"] == 1
    no_reason = await client.post("/v1/vee/edits", headers=write, json={
        "meter": "m2", "from": START.isoformat(), "to": START.isoformat(), "value": 1.0,
        "reason": ""})
    assert no_reason.status_code == 422 and "reason" in no_reason.json()["detail"]
    trail = await store.audit_trail()
    assert [(e.token, e.action) for e in trail][:2] == [("t-write", "vee.edit"),
                                                        ("t-clerk", "prepaid.topup")]
    history = await store.value_history("m2", "1-0:1.8.0", START + STEP, START + STEP)
    assert history[-1].actor == "api:t-write" and history[-1].note == "site visit"


async def test_flags_and_vee_status_and_collection_answer(api: Any) -> None:
    client, tokens = api
    read = auth(tokens["read"])
    flags = (await client.get("/v1/flags", headers=read, params={"open": "true"})).json()
    (f,) = flags["items"]
    one = (await client.get(f"/v1/flags/{f['id']}", headers=read)).json()
    assert one["kind"] == "clock_drift" and one["evidence"] == {"offset_s": 95}
    status = await client.get("/v1/vee/status", headers=read, params={"day": "2026-10-25"})
    assert status.status_code == 200 and "held_by" in status.json()
    worst = await client.get("/v1/collection/worst", headers=read, params={
        "from": START.isoformat(), "to": (START + timedelta(days=3)).isoformat()})
    assert set(worst.json()["never_heard"]) == {"m1", "m2"}  # no attempts were written
    bad = await client.get("/v1/collection", headers=read, params={
        "from": START.isoformat(), "to": START.isoformat(), "by": "planet"})
    assert bad.status_code == 422


async def test_the_openapi_document_and_docs_are_published(api: Any) -> None:
    client, _ = api
    doc = (await client.get("/openapi.json")).json()
    assert doc["info"]["title"] == "meter-collector"
    assert {"/v1/meters/{meter_id}/readings", "/v1/exports/nem12", "/v1/bills"} <= set(
        doc["paths"])
    assert (await client.get("/docs")).status_code == 200


async def test_the_nem12_export_streams_a_file_nemreader_reads(api: Any, tmp_path: Path) -> None:
    client, tokens = api
    got = await client.get("/v1/exports/nem12", headers=auth(tokens["billing"]),
                           params={"from": "2026-10-24", "to": "2026-10-26", "meters": "m1"})
    assert got.status_code == 200
    path = tmp_path / "api.nem12"
    path.write_bytes(got.content)
    parsed = read_nem_file(str(path))
    values = parsed.readings["sp1"]["E1"]
    assert len(values) == 3 * 96
    assert {r.quality_method for r in values} >= {"A", "E17"}
    unknown = await client.get("/v1/exports/nem12", headers=auth(tokens["billing"]),
                               params={"from": "2026-10-24", "to": "2026-10-24",
                                       "meters": "m1,ghost"})
    assert unknown.status_code == 422 and "ghost" in unknown.json()["detail"]
    rows = await client.get("/v1/exports/readings", headers=auth(tokens["billing"]),
                            params={"from": "2026-10-24", "to": "2026-10-24", "meters": "m1"})
    lines = list(csv.reader(io.StringIO(rows.text)))
    assert lines[0] == ["service_point", "meter", "quantity", "interval_end", "value", "unit",
                        "quality", "method", "reason", "version"]
    assert lines[1][:2] == ["sp1", "m1"]


async def test_a_page_of_raw_reads_says_exactly_what_the_versions_say(
        api: Any, store: Any) -> None:
    from collector.api.common import version_doc

    client, tokens = api
    lo, hi = START + 100 * STEP, START + 200 * STEP  # no estimate in here: the fast path
    got = (await client.get("/v1/meters/m2/readings", headers=auth(tokens["read"]), params={
        "from": lo.isoformat(), "to": hi.isoformat(), "limit": 60})).json()
    want = await store.current_values("1-0:1.8.0", lo, hi, ["m2"])
    assert got["items"] == [version_doc(v) for v in want[:60]]
    rest = (await client.get("/v1/meters/m2/readings", headers=auth(tokens["read"]), params={
        "from": lo.isoformat(), "to": hi.isoformat(), "limit": 60,
        "cursor": got["next"]})).json()
    assert rest["items"] == [version_doc(v) for v in want[60:]] and rest["next"] is None


async def test_a_web_session_outlives_an_api_restart_and_ends_at_logout_or_revocation(
        store: Any) -> None:
    from collector.api.auth import COOKIE

    secret = await store.create_token("viewer", ["read"])
    settings = Settings(source="(test)", collector=CollectorSettings(timezone=str(TZ)))

    def api_process() -> httpx.AsyncClient:
        """A fresh app on the same store: the API after a restart, or a second worker."""
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(settings, store)),
                                 base_url="http://test")

    async def login() -> str:
        async with api_process() as client:
            answer = await client.post("/login", data={"token": secret, "next": "/flags"},
                                       headers=SAME_SITE)
        assert answer.status_code == 303 and answer.headers["location"] == "/flags"
        return str(answer.cookies[COOKIE])

    async def status_with(sid: str, path: str = "/flags") -> int:
        async with api_process() as client:
            client.cookies.set(COOKIE, sid)
            return (await client.get(path)).status_code

    sid = await login()
    assert await status_with(sid) == 200                 # another process knows the session
    assert await status_with(sid, "/v1/meters") == 200   # and so does the API behind the page
    assert await status_with("not-a-session") == 303
    async with api_process() as client:
        client.cookies.set(COOKIE, sid)
        assert (await client.post("/logout", headers=SAME_SITE)).status_code == 303
    assert await status_with(sid) == 303                 # logged out everywhere
    assert await status_with(sid, "/v1/meters") == 401
    async with api_process() as client:
        client.cookies.set(COOKIE, sid)
        assert "log in again" in (await client.get("/v1/meters")).json()["detail"]

    sid = await login()
    assert await store.revoke_token("viewer")
    assert await status_with(sid) == 303                 # a revoked token ends its sessions
    assert await store.session_token(sid) is None

    unrevoked = await store.create_token("viewer-2", ["read"])
    assert await store.token_for(unrevoked) is not None
    stale = await store.start_session("viewer-2", hours=-1.0)
    assert await store.session_token(stale) is None      # expired


async def test_concentrators_answer_their_state_in_the_api_and_on_the_collection_page(
        store: Any) -> None:
    from collector.api.auth import COOKIE
    from collector.config.settings import parse
    from model import Event

    settings = parse({
        "collector": {"timezone": str(TZ)},
        "q1376": {"listen": "127.0.0.1:0"},
        "concentrator": [{"address": "4101-00001", "name": "dc01", "area": "T1"},
                         {"address": "4101-00002", "name": "dc02"}],
        "meter": [{"id": "q1", "protocol": "q1376", "concentrator": "dc01", "pn": 1}]})
    now = datetime.now(UTC).replace(microsecond=0)
    await store.upsert_meters(settings.meters)
    await store.write_events([
        Event("dc01", now - timedelta(hours=3), "terminal_online", {}),
        Event("dc01", now - timedelta(hours=1), "terminal_offline", {}),
        Event("dc01", now - timedelta(minutes=70), "terminal_heartbeat", {})])
    await store.write_readings([Reading("q1", "1-0:1.8.0", now - timedelta(hours=2), 7.5,
                                        "kWh")])
    secret = await store.create_token("viewer", ["read"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(settings, store)),
                                 base_url="http://test") as client:
        doc = (await client.get("/v1/concentrators", headers=auth(secret))).json()
        one, two = doc["items"]
        assert one == {"terminal": "dc01", "address": "4101-00001", "area": "T1",
                       "state": "offline", "since": (now - timedelta(hours=1)).isoformat(),
                       "last_heard": (now - timedelta(hours=1)).isoformat(), "points": 1,
                       "collected_through": (now - timedelta(hours=2)).isoformat()}
        assert (two["terminal"], two["state"], two["points"]) == ("dc02", "never seen", 0)
        as_csv = await client.get("/v1/concentrators", headers={**auth(secret),
                                                                 "Accept": "text/csv"})
        assert as_csv.text.splitlines()[0] == (
            "terminal,address,area,state,since,last_heard,points,collected_through")
        answer = await client.post("/login", data={"token": secret}, headers=SAME_SITE)
        client.cookies.set(COOKIE, answer.cookies[COOKIE])
        html = (await client.get("/collection")).text
        assert 'id="concentrators"' in html
        assert '<td class="bad">offline</td>' in html and "never seen" in html
