"""The TCP server concentrators dial into, and the register of who is online.

Safety first: a connection that never logs in is closed; unknown terminals are refused
unless allowed; a second connection claiming an address that is online does not take it
over silently: it is logged, and the old link is closed only once the new one has
logged in properly (so a stray half-open socket cannot knock a working terminal off).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from collector.acquisition.q1376.link import LinkLimits, TerminalLink
from collector.config.q1376 import Q1376Settings
from collector.ops.metrics import Metrics
from protocols.q1376 import frame as fr
from protocols.q1376 import items

log = logging.getLogger(__name__)


@dataclass
class TerminalStatus:
    address: str
    online: bool = False
    last_login: datetime | None = None
    last_heartbeat: datetime | None = None
    last_logout: datetime | None = None
    peer: str = ""
    logins: int = 0


Report = Callable[[TerminalLink, fr.Frame], Awaitable[bool]]
"""Data the terminal sent unasked: persisted, then True to confirm it."""


class FrontEnd:
    def __init__(self, settings: Q1376Settings, *, metrics: Metrics | None = None,
                 on_login: Callable[[TerminalLink], None] | None = None,
                 on_report: Report | None = None,
                 on_status: Callable[[str, bool, str], None] | None = None,
                 on_heartbeat: Callable[[str], None] | None = None) -> None:
        """`on_status(address, online, peer)` hears every login and every link lost."""
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.on_login = on_login
        self.on_report = on_report
        self.on_status = on_status
        self.on_heartbeat = on_heartbeat
        self.links: dict[str, TerminalLink] = {}
        """Logged-in links by terminal address."""
        self.known = frozenset(c.address for c in settings.concentrators)
        self.status: dict[str, TerminalStatus] = {
            address: TerminalStatus(address) for address in self.known}
        self.connections: set[TerminalLink] = set()
        self.refused = 0
        self.changed = asyncio.Condition()
        """Notified whenever a terminal goes online or offline (tests and the web view
        wait on it instead of polling)."""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.limits = LinkLimits(settings.timeout.total_seconds(), settings.retries,
                                 settings.max_frame, settings.max_frames_per_minute,
                                 settings.trace)

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._accept, host, port)
        sock = self._server.sockets[0]
        return int(sock.getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self.connections):
            await link.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def online(self) -> list[TerminalLink]:
        return [link for link in self.links.values() if not link.closed.is_set()]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.connections) >= self.settings.max_connections:
            self.refused += 1
            log.warning("q1376: %d connections already; refused %s",
                        len(self.connections), writer.get_extra_info("peername"))
            writer.close()
            return
        link = TerminalLink(reader, writer, self.limits, self._initiated, self.settings.master)
        self.connections.add(link)
        watchdog = asyncio.create_task(self._watch(link))
        self._tasks.add(watchdog)
        try:
            await link.serve()
        finally:
            watchdog.cancel()
            self._tasks.discard(watchdog)
            self.connections.discard(link)
            self._gone(link)

    async def _watch(self, link: TerminalLink) -> None:
        """Close a link that never logs in, or goes quiet past `offline_after`.

        It sleeps until the next deadline that could close the link (the login's, then
        the last frame's), not on a fixed tick: with thousands of links a tick per
        second each was thousands of wake-ups a second for nothing."""
        login_s = self.settings.login_within.total_seconds()
        idle_s = self.settings.offline_after.total_seconds()
        started = time.monotonic()
        while not link.closed.is_set():
            if link.logged_in_at is None:
                wait = started + login_s - time.monotonic()
                if wait <= 0:
                    log.warning("q1376: %s did not log in within %.0f s; closed", link.peer,
                                login_s)
                    await link.close()
                    return
            else:
                wait = link.last_frame + idle_s - time.monotonic()
                if wait <= 0:
                    log.warning("terminal %s: silent for %.0f s; offline", link.name,
                                idle_s)
                    await link.close()
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(link.closed.wait(), wait)

    def _gone(self, link: TerminalLink) -> None:
        if link.address is None:
            return
        key = link.address.text
        if self.links.get(key) is link:
            del self.links[key]
            status = self.status.setdefault(key, TerminalStatus(key))
            status.online = False
            self.metrics.q1376_online.labels(key).set(0)
            log.info("terminal %s offline", key)
            if self.on_status is not None:
                self.on_status(key, False, link.peer)
        self._notify()

    def _notify(self) -> None:
        async def notify() -> None:
            async with self.changed:
                self.changed.notify_all()

        task = asyncio.create_task(notify())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _initiated(self, link: TerminalLink, frame: fr.Frame) -> bool:
        if frame.afn == fr.AFN_LINK:
            try:
                fns = [u.fn for u in items.split_units(frame)]
            except fr.FrameError as exc:
                log.warning("terminal %s: bad link frame (%s)", link.name, exc)
                return False
            if items.F_LOGIN in fns:
                return await self._login(link, frame)
            if link.logged_in_at is None:
                log.warning("q1376: %s sent a link frame before logging in; ignored",
                            link.peer)
                return False
            if items.F_HEARTBEAT in fns:
                self.status[link.name].last_heartbeat = datetime.now(UTC)
                if self.on_heartbeat is not None:
                    self.on_heartbeat(link.name)
                return True
            if items.F_LOGOUT in fns:
                self.status[link.name].last_logout = datetime.now(UTC)
                await link.send(items.confirm(frame.address, frame.pseq, True))
                await link.close()
                return False
            return True
        if link.logged_in_at is None:
            log.warning("q1376: %s sent AFN %02X before logging in; ignored", link.peer,
                        frame.afn)
            return False
        if self.on_report is None:
            return False
        return await self.on_report(link, frame)

    async def _login(self, link: TerminalLink, frame: fr.Frame) -> bool:
        key = frame.address.text
        if key not in self.known and not self.settings.accept_unknown:
            self.refused += 1
            log.warning("q1376: unknown terminal %s from %s refused (accept_unknown = false; "
                        "add a [[concentrator]] with address = %r)", key, link.peer, key)
            await link.send(items.confirm(frame.address, frame.pseq, False))
            await link.close()
            return False
        old = self.links.get(key)
        if old is link:
            return True  # a repeated login on the same link
        link.mark_login(frame)
        await link.send(items.confirm(frame.address, frame.pseq, True))
        self.links[key] = link  # before the old link closes, so it does not read offline
        if old is not None and not old.closed.is_set():
            log.warning("terminal %s: a second connection from %s logged in; closing the "
                        "older link from %s", key, link.peer, old.peer)
            await old.close()
        status = self.status.setdefault(key, TerminalStatus(key))
        status.online, status.peer = True, link.peer
        status.last_login = link.logged_in_at
        status.last_heartbeat = link.logged_in_at
        status.logins += 1
        self.metrics.q1376_online.labels(key).set(1)
        self.metrics.q1376_logins.labels(key).inc()
        log.info("terminal %s logged in from %s", key, link.peer)
        if self.on_status is not None:
            self.on_status(key, True, link.peer)
        self._notify()
        if self.on_login is not None:
            self.on_login(link)
        return False  # already confirmed
