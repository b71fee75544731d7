"""The API and the web view as an attacker tries them (issue 28): cross-site writes with
a logged-in cookie, framing and sniffing, guessing logins, writes outside a token's
domain, and the smaller faults an auditor found."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from collector.api.app import create_app
from collector.api.auth import COOKIE
from collector.config.settings import CollectorSettings, Settings
from tests.integration.test_api import SAME_SITE, TZ, auth, seed

EVIL = {"Origin": "https://evil.example"}


@pytest.fixture
async def site(store: Any) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    await seed(store)
    tokens = {name: await store.create_token(f"t-{name}", scopes) for name, scopes in {
        "read": ["read"], "write": ["write"], "billing": ["billing"],
        "clerk": ["billing", "write"], "admin": ["admin"]}.items()}
    app = create_app(Settings(source="(test)", collector=CollectorSettings(timezone=str(TZ))),
                     store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as client:
        yield client, tokens


async def logged_in(client: httpx.AsyncClient, secret: str) -> None:
    answer = await client.post("/login", data={"token": secret}, headers=SAME_SITE)
    assert answer.status_code == 303
    client.cookies.set(COOKIE, answer.cookies[COOKIE])


async def test_a_cookie_authorizes_no_write_from_another_site(site: Any) -> None:
    client, tokens = site
    await logged_in(client, tokens["admin"])
    topup = {"amount": 5.0, "reference": "pay-csrf"}
    refused = await client.post("/v1/prepaid/P1/topups", json=topup, headers=EVIL)
    assert refused.status_code == 403 and "Cross-site" in refused.json()["title"]
    bare = await client.post("/v1/prepaid/P1/topups", json=topup)  # no Origin, no Referer
    assert bare.status_code == 403
    own = await client.post("/v1/prepaid/P1/topups", json=topup, headers=SAME_SITE)
    assert own.status_code == 201
    # A script with a bearer token is no browser: no Origin is needed.
    client.cookies.clear()
    scripted = await client.post("/v1/prepaid/P1/topups", json={**topup, "reference": "p2"},
                                 headers=auth(tokens["clerk"]))
    assert scripted.status_code == 201


async def test_the_login_form_takes_no_cross_site_post(site: Any) -> None:
    client, tokens = site
    forged = await client.post("/login", data={"token": tokens["admin"]}, headers=EVIL)
    assert forged.status_code == 403 and COOKIE not in forged.cookies


async def test_every_page_and_api_response_carries_the_security_headers(site: Any) -> None:
    client, tokens = site
    for path, headers in (("/v1/meters", auth(tokens["read"])), ("/login", {}),
                          ("/v1/meters", {})):
        got = await client.get(path, headers=headers)
        assert "frame-ancestors 'none'" in got.headers["content-security-policy"], path
        assert got.headers["x-frame-options"] == "DENY"
        assert got.headers["x-content-type-options"] == "nosniff"
        assert got.headers["referrer-policy"] == "same-origin"
        assert got.headers["cache-control"] == "no-store"


async def test_bad_logins_are_logged_and_then_throttled(
        site: Any, caplog: pytest.LogCaptureFixture) -> None:
    client, tokens = site
    caplog.set_level(logging.WARNING, "collector.api.web")
    codes = [(await client.post("/login", data={"token": f"guess-{n}"},
                                headers=SAME_SITE)).status_code for n in range(7)]
    assert codes == [200] * 5 + [429, 429]
    late = await client.post("/login", data={"token": tokens["admin"]}, headers=SAME_SITE)
    assert late.status_code == 429 and int(late.headers["retry-after"]) > 0
    assert sum("failed login from" in r.message for r in caplog.records) == 5
    assert any("too many failed logins" in r.message for r in caplog.records)


async def test_a_write_needs_its_own_domains_scope(site: Any) -> None:
    client, tokens = site
    topup = {"amount": 5.0, "reference": "pay-scope"}
    for who in ("write", "billing"):
        got = await client.post("/v1/prepaid/P1/topups", json=topup, headers=auth(tokens[who]))
        assert got.status_code == 403 and "'billing' and 'write'" in got.json()["detail"]
        released = await client.post("/v1/bills/1/release", json={"note": "ok"},
                                     headers=auth(tokens[who]))
        assert released.status_code == 403
    ok = await client.post("/v1/prepaid/P1/topups", json=topup, headers=auth(tokens["clerk"]))
    assert ok.status_code == 201


async def test_releasing_a_bill_that_does_not_exist_is_not_found(site: Any) -> None:
    client, tokens = site
    got = await client.post("/v1/bills/987654/release", json={"note": "x"},
                            headers=auth(tokens["clerk"]))
    assert got.status_code == 404 and got.headers["content-type"].startswith(
        "application/problem+json")


async def test_an_unknown_meter_or_flag_page_is_not_found(site: Any) -> None:
    client, tokens = site
    await logged_in(client, tokens["read"])
    for path in ("/meters/nobody", "/flags/987654"):
        got = await client.get(path)
        assert got.status_code == 404 and "is known here" in got.text, path


async def test_the_login_redirect_keeps_the_whole_address_url_encoded(site: Any) -> None:
    client, _ = site
    got = await client.get("/meters/m1?from=2026-10-24&to=2026-10-25")
    assert got.status_code == 303
    location = got.headers["location"]
    assert "&amp;" not in location
    (back,) = parse_qs(urlsplit(location).query)["next"]
    assert back == "/meters/m1?from=2026-10-24&to=2026-10-25"


async def test_the_meter_page_opens_on_the_last_day_its_reads_close(site: Any) -> None:
    """The seed's last read is stamped at local midnight of 27 Oct: it closes the 26th,
    and the page opens there, not on an empty 27th."""
    client, tokens = site
    await logged_in(client, tokens["read"])
    got = await client.get("/meters/m1")
    assert got.status_code == 200
    assert 'name="to" value="2026-10-26"' in got.text


async def test_an_alarm_is_acknowledged_assigned_noted_and_closed_with_its_history(
        site: Any, store: Any) -> None:
    client, tokens = site
    (flag,) = await store.list_flags(open_only=True)
    ops = await store.create_token("t-ops", ["read", "write"])
    path = f"/v1/flags/{flag.id}/actions"
    steps = [{"action": "acknowledge"}, {"action": "assign", "assignee": "crew-7"},
             {"action": "note", "note": "crew on site at 10:40"},
             {"action": "close", "note": "clock synced; offset 0 s after"}]
    for step in steps:
        got = await client.post(path, json=step, headers=auth(ops))
        assert got.status_code == 201, got.text
    assert (await client.post(path, json={"action": "note", "note": "late"},
                              headers=auth(ops))).status_code == 409  # closed already
    assert (await client.post("/v1/flags/987654/actions", json={"action": "acknowledge"},
                              headers=auth(ops))).status_code == 404
    assert (await client.post(path, json={"action": "acknowledge"},
                              headers=auth(tokens["read"]))).status_code == 403
    history = await store.flag_actions(flag.id)
    assert [(a.action, a.assignee) for a in history] == [
        ("acknowledge", ""), ("assign", "crew-7"), ("note", ""), ("close", "")]
    assert all(a.actor == "api:t-ops" for a in history)
    assert await store.list_flags(open_only=True) == []  # closing cleared it


async def test_a_close_without_a_note_is_refused_and_the_page_shows_the_work(
        site: Any, store: Any) -> None:
    client, _ = site
    (flag,) = await store.list_flags(open_only=True)
    ops = await store.create_token("t-ops", ["read", "write"])
    await logged_in(client, ops)
    page = f"/flags/{flag.id}"
    bare = await client.post(f"{page}/actions", data={"action": "close"}, headers=SAME_SITE)
    assert bare.status_code == 422 and "says why" in bare.json()["detail"]
    done = await client.post(f"{page}/actions", data={"action": "assign", "assignee": "ana"},
                             headers=SAME_SITE)
    assert done.status_code == 303 and done.headers["location"] == page
    shown = (await client.get(page)).text
    assert 'id="state">acknowledged' in shown and ">ana<" in shown and "web:t-ops" in shown


async def test_a_meter_command_is_queued_from_the_meter_page_by_a_write_token_only(
        site: Any, store: Any) -> None:
    client, tokens = site
    await logged_in(client, tokens["read"])
    assert 'id="command"' not in (await client.get("/meters/m1")).text  # no form to read-only
    refused = await client.post("/meters/m1/commands", data={"command": "read"},
                                headers=SAME_SITE)
    assert refused.status_code == 403
    await logged_in(client, await store.create_token("t-ops", ["read", "write"]))
    sent = await client.post("/meters/m1/commands", data={"command": "read"},
                             headers=SAME_SITE)
    assert sent.status_code == 303
    shown = (await client.get("/meters/m1")).text
    assert 'id="command"' in shown and "queued" in shown and "web:t-ops" in shown
    (queued,) = await store.meter_commands(["m1"], queued_only=True)
    assert queued.command == "read"
