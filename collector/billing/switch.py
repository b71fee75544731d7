"""The transports prepaid control uses: DL/T 645 remote control (1CH) to a meter on one
of our buses, and MQTT for the alerts an SMS or app service sends on."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt

from collector.acquisition.mqtt_link import client as mqtt_client
from collector.billing.prepaid import RECONNECT, TRIP, event_payload, topic
from collector.config.billing import PrepaidSettings
from collector.config.settings import MqttSettings
from model import Meter, PrepaidEvent
from protocols.dlt645 import codec
from protocols.dlt645.client import Dlt645Client
from protocols.errors import ProtocolError
from protocols.mqtt import schema, topics

log = logging.getLogger(__name__)
VALID_FOR = timedelta(minutes=5)
"""A command the meter receives later than this is refused by the meter itself."""


class Dlt645Switch:
    """Trip or reconnect a meter through the client of its bus, then read its status
    word back: a command is done only when the meter reports the relay as commanded."""

    def __init__(self, clients: Mapping[str, Dlt645Client], meters: Mapping[str, Meter],
                 settings: PrepaidSettings, tz: ZoneInfo,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.now = now
        self.clients = clients
        self.meters = meters
        self.settings = settings
        self.tz = tz

    def reaches(self, meter_id: str) -> bool:
        meter = self.meters.get(meter_id)
        return meter is not None and meter.bus in self.clients

    async def __call__(self, meter_id: str, action: str, reason: str) -> bool:
        meter = self.meters.get(meter_id)
        client = self.clients.get(meter.bus) if meter else None
        if meter is None or client is None or meter.protocol != "dlt645":
            log.warning("%s of %s not sent: no DL/T 645 bus of ours reaches it (%s)", action,
                        meter_id, reason)
            return False
        secret = os.environ.get(self.settings.password_env, "")
        try:
            password = bytes.fromhex(secret)
        except ValueError:
            password = b""
        if len(password) != 4:
            log.error("%s of %s not sent: set %s to the meter's control password "
                      "(8 hex digits)", action, meter_id, self.settings.password_env)
            return False
        command = {TRIP: codec.RC_TRIP, RECONNECT: codec.RC_CLOSE}[action]
        until = (self.now() + VALID_FOR).astimezone(self.tz)
        try:
            await client.remote_control(meter.address, password, self.settings.operator,
                                        command, until)
            opened = await client.read_relay_open(meter.address)
        except ProtocolError as exc:
            log.warning("%s of meter %s on bus %s failed: %s", action, meter_id, meter.bus, exc)
            return False
        return opened == (action == TRIP)


class MqttPublisher:
    """Publishes each prepaid event at QoS 1 on {prefix}/prepaid/{account}/{kind}; the
    caller marks it published only after this returns, so a dead broker delays alerts
    and loses none."""

    def __init__(self, settings: MqttSettings, client_id: str = "collector-prepaid") -> None:
        self.settings = settings
        self.client_id = client_id

    async def __call__(self, event: PrepaidEvent) -> None:
        async with mqtt_client(self.settings, self.client_id) as c:
            await c.publish(topic(self.settings.topic_prefix, event),
                            json.dumps(event_payload(event)), qos=1)


class MqttSwitch:
    """Trip or reconnect a meter behind a remote gateway: a command on the gateway's cmd
    topic, done only when its reply says the meter confirmed it. The command is sent
    again until a reply comes or the time is up: a gateway that was reconnecting misses
    nothing, and a trip or reconnect repeated is the same command to the meter."""

    def __init__(self, settings: MqttSettings, gateway_of: Mapping[str, str],
                 timeout_s: float = 60.0, resend_s: float = 5.0) -> None:
        self.settings = settings
        self.gateway_of = dict(gateway_of)
        self.timeout_s = timeout_s
        self.resend_s = resend_s

    async def __call__(self, meter_id: str, action: str, reason: str) -> bool:
        gateway = self.gateway_of.get(meter_id)
        if gateway is None:
            log.warning("%s of %s not sent: no gateway of record reaches it (%s)", action,
                        meter_id, reason)
            return False
        prefix = self.settings.topic_prefix
        command = schema.Command(uuid.uuid4().hex, action, meter_id, reason=reason[:500])
        try:
            async with mqtt_client(self.settings, f"collector-switch-{command.id[:12]}") as c:
                await c.subscribe(topics.topic(gateway, "cmd/reply", prefix), qos=1)
                async with asyncio.timeout(self.timeout_s):
                    while True:
                        await c.publish(topics.topic(gateway, "cmd", prefix),
                                        schema.encode_command(command), qos=1)
                        reply = await self._reply(c, command.id)
                        if reply is not None:
                            break
        except TimeoutError:
            log.warning("%s of %s: gateway %s did not answer within %.0f s", action, meter_id,
                        gateway, self.timeout_s)
            return False
        except aiomqtt.MqttError as exc:
            log.warning("%s of %s not sent: broker unreachable (%s)", action, meter_id, exc)
            return False
        ok = reply.get("ok") is True
        log.log(logging.INFO if ok else logging.WARNING, "%s of %s through gateway %s: %s",
                action, meter_id, gateway, reply.get("detail", ""))
        return ok

    async def _reply(self, c: aiomqtt.Client, command_id: str) -> dict[str, Any] | None:
        """The reply to this command, or None when none came within resend_s."""
        try:
            async with asyncio.timeout(self.resend_s):
                async for message in c.messages:
                    try:
                        body = json.loads(bytes(message.payload))
                    except (ValueError, TypeError):
                        continue
                    if isinstance(body, dict) and body.get("id") == command_id:
                        return body
        except TimeoutError:
            return None
        return None
