"""Connecting to the broker from collector.toml: credentials, TLS, MQTT v5 sessions.

aiomqtt exposes neither manual acknowledgement nor the reason code of a PUBACK, and the
no-read-lost guarantees need both; the paho client it wraps (`client._client`, a private
attribute) is touched here and nowhere else, and tests/integration/test_mqtt_adapter.py
fails loudly if an aiomqtt release moves it.
"""

from __future__ import annotations

import contextvars
import logging
import os
import ssl
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.config.settings import MqttSettings
from collector.errors import CollectorError

log = logging.getLogger(__name__)

NO_MATCHING_SUBSCRIBERS = 0x10


class MqttAuthError(CollectorError):
    """The broker refused our credentials: retrying will not help, a person must fix them."""


def password(settings: MqttSettings) -> str | None:
    if not settings.password_env:
        return None
    value = os.environ.get(settings.password_env)
    if value is None:
        raise CollectorError(f"[mqtt] password_env: environment variable "
                             f"{settings.password_env} is not set")
    return value


def tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    if not settings.tls:
        return None
    context = ssl.create_default_context(cafile=settings.ca_file or None)
    if settings.cert_file:
        context.load_cert_chain(settings.cert_file, settings.key_file or None)
    return context


def client(
    settings: MqttSettings,
    client_id: str,
    *,
    persistent: bool = False,
    will: aiomqtt.Will | None = None,
) -> aiomqtt.Client:
    """A v5 client; `persistent` keeps the session (and its queued QoS 1 messages) across
    disconnects for session_expiry_s, so nothing published while we are away is lost."""
    properties = None
    if persistent:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = settings.session_expiry_s
    return aiomqtt.Client(
        settings.host,
        settings.port,
        username=settings.username or None,
        password=password(settings),
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=not persistent,
        properties=properties,
        will=will,
        tls_context=tls_context(settings),
        keepalive=30,
        timeout=10,
    )


def is_auth_failure(exc: aiomqtt.MqttError) -> bool:
    text = str(exc).lower()
    return any(word in text for word in ("not authorized", "bad user name or password",
                                         "bad username or password", "code:134", "code:135"))


def _paho(client: aiomqtt.Client) -> Any:
    paho = getattr(client, "_client", None)
    if paho is None or not hasattr(paho, "manual_ack_set") or not hasattr(paho, "ack"):
        raise RuntimeError("aiomqtt no longer wraps a paho client at Client._client; the "
                           "manual-ack adapter in collector/mqtt_link.py needs updating")
    return paho


def manual_acks(client: aiomqtt.Client) -> None:
    """PUBACK only when ack() is called: a message is acknowledged after it is stored."""
    _paho(client).manual_ack_set(True)


def ack(client: aiomqtt.Client, message: aiomqtt.Message) -> None:
    _paho(client).ack(message.mid, message.qos)


_MIDS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("mqtt_mids",
                                                                         default=None)


class PublishReceipts:
    """The PUBACK reason code of each publish made through publish_checked().

    MQTT v5 brokers answer 0x10 "no matching subscribers" for a message nobody will get:
    no head-end subscribed yet, or a broker that lost its shared subscriptions in a
    restart (mosquitto 2.0.11 does). The message is acknowledged and dropped, so a
    gateway must not delete its rows on such a PUBACK.
    """

    def __init__(self, client: aiomqtt.Client) -> None:
        paho = _paho(client)
        self.waiting: set[int] = set()
        self.reasons: dict[int, int] = {}
        inner_publish = paho.publish
        inner_on_publish = paho.on_publish

        def publish(*args: Any, **kwargs: Any) -> Any:
            info = inner_publish(*args, **kwargs)
            mids = _MIDS.get()
            if mids is not None:
                mids.append(info.mid)
                self.waiting.add(info.mid)
            return info

        def on_publish(c: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
            if mid in self.waiting:
                self.reasons[mid] = int(getattr(reason, "value", reason))
            inner_on_publish(c, userdata, mid, reason, props)

        paho.publish = publish
        paho.on_publish = on_publish

    async def publish_checked(self, client: aiomqtt.Client, topic: str, payload: bytes,
                              qos: int = 1) -> int:
        """Publish and wait for the PUBACK; returns its reason code (0 = delivered)."""
        mids: list[int] = []
        token = _MIDS.set(mids)
        try:
            await client.publish(topic, payload, qos=qos)
        finally:
            _MIDS.reset(token)
            self.waiting.difference_update(mids)
            codes = [self.reasons.pop(mid, 0) for mid in mids]
        return max(codes, default=0)
