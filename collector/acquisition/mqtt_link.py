"""Connecting to the broker from collector.toml: credentials, TLS, MQTT v5 sessions.

What aiomqtt does not expose (manual acks, PUBACK reason codes) is in paho_adapter.
"""

from __future__ import annotations

import logging
import os
import ssl

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.config.settings import MqttSettings
from collector.errors import CollectorError

log = logging.getLogger(__name__)



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
        properties.ReceiveMaximum = settings.receive_maximum
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
