"""The web view in a real browser: Debian's chromium, driven through chromium-driver,
against `collector api` serving a database `collector demo` made. Every page loads with
no console error; a flag opens to its evidence; a meter's chart has drawn its points."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from simulator.ports import free_port
from tests.support.services import started_api

pytestmark = pytest.mark.browser
CLI = [sys.executable, "-m", "collector.cli"]


@dataclass
class Site:
    url: str
    token: str
    db: Path
    writer: str = ""
    """A token with the write scope: an operator who works the alarms."""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("web")
    db = root / "demo.db"
    subprocess.run([*CLI, "demo", "--hours", "3", "--db", str(db)],
                   check=True, capture_output=True, timeout=180)
    config = root / "collector.toml"
    config.write_text(f'[collector]\ntimezone = "Asia/Shanghai"\n'
                      f'[storage]\nurl = "sqlite:///{db}"\n')
    made = subprocess.run([*CLI, "token", "-c", str(config), "create", "--name", "browser",
                           "--scope", "read"], check=True, capture_output=True, text=True,
                          timeout=60)
    token = made.stdout.strip().splitlines()[-1]
    ops = subprocess.run([*CLI, "token", "-c", str(config), "create", "--name", "operator",
                          "--scope", "read", "--scope", "write"], check=True,
                         capture_output=True, text=True, timeout=60)
    writer = ops.stdout.strip().splitlines()[-1]
    port = free_port()
    # Two processes, as behind a proxy: the browser's session must hold whichever answers.
    server = started_api([*CLI, "api", "-c", str(config), "--host", "127.0.0.1",
                          "--port", str(port), "--workers", "2"])
    try:
        yield Site(f"http://127.0.0.1:{port}", token, db, writer)
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "install Debian's chromium and chromium-driver (./dev setup)"
    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900",
                "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    b = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield b
    finally:
        b.quit()


def left(old: WebElement) -> Callable[[WebDriver], bool]:
    """The old page has gone once its root element is detached. Chromedriver says so in
    one of two ways: a stale element reference, or, when asked while the new document is
    replacing it, an "unknown error" that the node does not belong to the document.
    Selenium's staleness_of knows only the first, so the second failed a CI run."""
    def gone(_: WebDriver) -> bool:
        try:
            old.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as e:
            if "does not belong to the document" in (e.msg or ""):
                return True
            raise
        return False
    return gone


def submitted(b: WebDriver, by: str, value: str, then: tuple[str, str]) -> None:
    """Click, then wait for what the next page shows: a click starts the navigation, it
    does not wait for the new page."""
    old = b.find_element(By.TAG_NAME, "html")
    b.find_element(by, value).click()
    WebDriverWait(b, 30).until(left(old))
    WebDriverWait(b, 30).until(EC.presence_of_element_located(then))


def console_errors(b: WebDriver) -> list[str]:
    return [e["message"] for e in b.get_log("browser") if e["level"] == "SEVERE"]


def logged_in(site: Site, b: WebDriver) -> None:
    b.get(f"{site.url}/collection")
    if "/login" in b.current_url:
        b.find_element(By.ID, "token").send_keys(site.token)
        submitted(b, By.ID, "login", (By.ID, "heatmap"))
    assert b.current_url.endswith("/collection"), b.current_url


def test_a_page_without_a_session_asks_for_a_token_and_refuses_a_wrong_one(
        site: Site, browser: WebDriver) -> None:
    browser.delete_all_cookies()
    browser.get(f"{site.url}/flags")
    assert "/login" in browser.current_url
    browser.find_element(By.ID, "token").send_keys("mc_wrong")
    submitted(browser, By.ID, "login", (By.ID, "login-error"))
    assert "unknown, revoked" in browser.find_element(By.ID, "login-error").text
    cookie_flags = {c["name"]: c for c in browser.get_cookies()}
    assert "mc_session" not in cookie_flags
    browser.find_element(By.ID, "token").send_keys(site.token)
    submitted(browser, By.ID, "login", (By.ID, "flags"))
    session = {c["name"]: c for c in browser.get_cookies()}["mc_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert browser.current_url.endswith("/flags")


def test_every_page_loads_without_a_console_error(site: Site, browser: WebDriver) -> None:
    logged_in(site, browser)
    for path, element in (("/collection", "heatmap"), ("/flags?open=true", "flags"),
                          ("/areas", "areas"), ("/areas/T01", "balance"),
                          ("/meters/m001", "profile")):
        browser.get(site.url + path)
        assert browser.find_element(By.ID, element).is_displayed(), path
        assert console_errors(browser) == [], path
    browser.get(site.url + "/collection")
    heat = browser.find_element(By.ID, "heatmap")
    assert "T01" in heat.text and "%" in heat.text
    assert "m020" in browser.find_element(By.ID, "worst").text  # the dead meter ranks first


def test_a_flag_opens_to_its_evidence_and_its_meter_to_a_drawn_chart(
        site: Site, browser: WebDriver) -> None:
    logged_in(site, browser)
    browser.get(f"{site.url}/flags?kind=clock_drift")
    submitted(browser, By.CSS_SELECTOR, "#flags a.flag", (By.ID, "evidence"))
    evidence = browser.find_element(By.ID, "evidence").text
    assert "max_offset_s" in evidence
    submitted(browser, By.CSS_SELECTOR, "h1 a", (By.ID, "profile"))
    assert "/meters/m017" in browser.current_url
    chart = browser.find_element(By.ID, "profile")
    points = chart.find_elements(By.CSS_SELECTOR, "circle")
    # A point per interval between two stored reads: exactly what the store holds for the
    # day shown (the demo's accelerated clock may skip a slot on a busy machine).
    day = date.fromisoformat(browser.find_element(By.NAME, "from").get_attribute("value")
                             or "")
    lo = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo("Asia/Shanghai"))
    with sqlite3.connect(site.db) as conn:
        (reads,) = conn.execute(
            "SELECT count(*) FROM reading_values WHERE meter_id = 'm017' AND quantity = "
            "'1-0:1.8.0' AND kind = 'interval' AND ts >= ? AND ts <= ?",
            (lo.timestamp(), (lo + timedelta(days=1)).timestamp())).fetchone()
    assert reads >= 2 and len(points) == reads - 1
    assert chart.find_elements(By.CSS_SELECTOR, "rect.flag-window")  # the drift, shaded
    assert console_errors(browser) == []


def test_an_operator_sees_the_shift_figures_the_links_and_each_flag_in_words(
        site: Site, browser: WebDriver, tmp_path: Path) -> None:
    """Issue 28's operator view: the KPI strip, communication per gateway, a flag's
    evidence explained with its next step, local times, the area balance with its
    transformer and loss, and search. Screenshots are kept beside the test's files."""
    logged_in(site, browser)
    browser.get(f"{site.url}/collection")
    kpis = browser.find_element(By.ID, "kpis").text
    assert "read rate" in kpis and "target 98 %" in kpis and "open alarms" in kpis
    assert "demo-gw" in browser.find_element(By.ID, "links").text
    browser.save_screenshot(str(tmp_path / "collection.png"))

    browser.get(f"{site.url}/flags?kind=clock_drift")
    assert "CST" in browser.find_element(By.ID, "flags").text  # local times, with the zone
    submitted(browser, By.CSS_SELECTOR, "#flags a.flag", (By.ID, "seen"))
    assert "s off the head-end's" in browser.find_element(By.ID, "seen").text
    assert "time sync" in browser.find_element(By.ID, "next").text
    assert "max_offset_s" in browser.find_element(By.ID, "evidence").text
    browser.save_screenshot(str(tmp_path / "flag.png"))

    browser.get(f"{site.url}/areas/T01")
    row = browser.find_elements(By.CSS_SELECTOR, "#balance tr")[-1].text.split()
    assert "–" not in row, row  # the transformer's kWh and the loss, not dashes
    browser.save_screenshot(str(tmp_path / "area.png"))

    box = browser.find_element(By.NAME, "q")
    box.send_keys("000000000017")  # the address on the nameplate
    old = browser.find_element(By.TAG_NAME, "html")
    box.submit()
    WebDriverWait(browser, 30).until(left(old))
    WebDriverWait(browser, 30).until(EC.presence_of_element_located((By.ID, "profile")))
    assert browser.current_url.endswith("/meters/m017")  # one match opens it
    assert console_errors(browser) == []
    assert all((tmp_path / f"{n}.png").stat().st_size > 0 for n in ("collection", "flag",
                                                                      "area"))


def test_an_operator_acknowledges_and_closes_an_alarm_from_its_page(
        site: Site, browser: WebDriver, tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import Select

    browser.delete_all_cookies()
    browser.get(f"{site.url}/login")
    browser.find_element(By.ID, "token").send_keys(site.writer)
    submitted(browser, By.ID, "login", (By.ID, "heatmap"))
    browser.get(f"{site.url}/flags?kind=never_heard")
    submitted(browser, By.CSS_SELECTOR, "#flags a.flag", (By.ID, "act"))
    assert browser.find_element(By.ID, "state").text == "open"
    submitted(browser, By.ID, "do", (By.ID, "act"))  # acknowledge: the first choice
    assert browser.find_element(By.ID, "state").text == "acknowledged"
    Select(browser.find_element(By.ID, "action")).select_by_value("close")
    browser.find_element(By.ID, "note").send_keys("meter found unpowered; crew restored it")
    submitted(browser, By.ID, "do", (By.ID, "actions"))
    assert browser.find_element(By.ID, "state").text == "closed"
    assert "crew restored it" in browser.find_element(By.ID, "actions").text
    assert "web:operator" in browser.find_element(By.ID, "actions").text
    assert not browser.find_elements(By.ID, "act")  # a closed alarm takes no more steps
    browser.save_screenshot(str(tmp_path / "alarm.png"))
    assert console_errors(browser) == []
    browser.delete_all_cookies()  # the next test logs in with its own token
