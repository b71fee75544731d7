"""The transports prepaid control uses: DL/T 645 remote control (1CH) to a meter on one
of our buses, and MQTT for the alerts an SMS or app service sends on."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from collector.acquisition.mqtt_link import client as mqtt_client
from collector.billing.prepaid import RECONNECT, TRIP, event_payload, topic
from collector.config.billing import PrepaidSettings
from collector.config.settings import MqttSettings
from model import Meter, PrepaidEvent
from protocols.dlt645 import codec
from protocols.dlt645.client import Dlt645Client
from protocols.errors import ProtocolError

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
