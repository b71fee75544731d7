"""[mqtt] of collector.toml: the gateway's uplink or the head-end's ingest, refused on an
open network unless it is encrypted and authenticated."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from collector.config.sections import Section, parse_duration
from collector.errors import ConfigError
from protocols.mqtt import schema


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class MqttSettings:
    role: str = ""
    """"gateway" (forward the local outbox), "headend" (ingest), or "" (MQTT off)."""
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password_env: str = ""
    client_id: str = ""
    topic_prefix: str = "mc/v1"
    share_group: str = "headend"
    session_expiry_s: int = 7 * 86400
    batch_size: int = 500
    outbox_max_rows: int = 1_000_000
    heartbeat_s: float = 60.0
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    allow_insecure: bool = False
    """Allow a non-loopback broker without TLS or credentials (warned at every start)."""
    accept_past: timedelta = timedelta(days=400)
    accept_future: timedelta = timedelta(days=1)
    receive_maximum: int = 200
    """Messages the broker may have in flight to a head-end at once (MQTT v5 Receive
    Maximum). The rest of a backlog waits in the broker's persistent queue, not in the
    head-end's memory, however far behind the head-end falls."""

    def insecure_reasons(self) -> list[str]:
        """What makes this connection readable or forgeable by others on the network."""
        if is_loopback(self.host):
            return []
        reasons = []
        if not self.tls:
            reasons.append("without TLS")
        if not self.username:
            reasons.append("without credentials")
        return reasons

    @property
    def limits(self) -> schema.Limits:
        return schema.Limits(max_age=self.accept_past, max_ahead=self.accept_future)


MQTT_KEYS = {
    "role": 'role = "gateway"  # or "headend"',
    "host": 'host = "mqtt.example.net"',
    "port": "port = 8883",
    "username": 'username = "gw-001"',
    "password_env": 'password_env = "COLLECTOR_MQTT_PASSWORD"',
    "client_id": 'client_id = "headend-1"',
    "topic_prefix": 'topic_prefix = "mc/v1"',
    "share_group": 'share_group = "headend"',
    "session_expiry_s": "session_expiry_s = 604800",
    "batch_size": "batch_size = 500",
    "outbox_max_rows": "outbox_max_rows = 1000000",
    "heartbeat_s": "heartbeat_s = 60",
    "tls": "tls = true",
    "ca_file": 'ca_file = "/etc/ssl/certs/ca-certificates.crt"',
    "cert_file": 'cert_file = "/etc/meter-collector/client.crt"',
    "key_file": 'key_file = "/etc/meter-collector/client.key"',
    "allow_insecure": "allow_insecure = true  # only on a network you trust",
    "accept_past": 'accept_past = "400d"  # oldest timestamp a payload may carry',
    "accept_future": 'accept_future = "1d"  # how far ahead of now a timestamp may lie',
    "receive_maximum": "receive_maximum = 200  # messages in flight to a head-end",
}


def parse_mqtt(s: Section) -> MqttSettings:
    role = s.get("role", str, "")
    if role not in ("", "gateway", "headend"):
        raise s.error("role", f"{role!r} must be gateway or headend")
    port = s.get("port", int, 1883)
    if not 1 <= port <= 65535:
        raise s.error("port", "must be 1..65535")
    expiry = s.get("session_expiry_s", int, 7 * 86400)
    batch = s.get("batch_size", int, 500)
    if not 1 <= batch <= 10_000:
        raise s.error("batch_size", "must be 1..10000 (one payload's readings)")
    outbox = s.get("outbox_max_rows", int, 1_000_000)
    if outbox < 1000:
        raise s.error("outbox_max_rows", "must be at least 1000")
    prefix = s.get("topic_prefix", str, "mc/v1")
    if not prefix or "+" in prefix or "#" in prefix:
        raise s.error("topic_prefix", "must be a plain topic path without wildcards")
    tls = s.get("tls", bool, False)
    for key in ("ca_file", "cert_file", "key_file"):
        path = s.get(key, str, "")
        if path and not Path(path).exists():
            raise s.error(key, f"{path} does not exist")
    windows: dict[str, timedelta] = {}
    for key, default in (("accept_past", "400d"), ("accept_future", "1d")):
        raw = s.get(key, (str, int), default)
        window = parse_duration(raw)
        if window is None:
            raise s.error(key, f"{raw!r} is not a duration like 1d or 400d")
        windows[key] = window
    receive = s.get("receive_maximum", int, 200)
    if not 1 <= receive <= 65535:
        raise s.error("receive_maximum", "must be 1..65535 (MQTT v5 Receive Maximum)")
    settings = MqttSettings(
        role, s.get("host", str, "127.0.0.1"), port, s.get("username", str, ""),
        s.get("password_env", str, ""), s.get("client_id", str, ""), prefix,
        s.get("share_group", str, "headend"), expiry, batch, outbox,
        float(s.get("heartbeat_s", (int, float), 60)), tls, s.get("ca_file", str, ""),
        s.get("cert_file", str, ""), s.get("key_file", str, ""),
        s.get("allow_insecure", bool, False), windows["accept_past"],
        windows["accept_future"], receive)
    insecure = settings.insecure_reasons()
    if role and insecure and not settings.allow_insecure:
        raise ConfigError(
            s.file, "mqtt.host",
            f"connecting to {settings.host} {' and '.join(insecure)} is refused: anyone on "
            "the network could read or forge meter data",
            'tls = true, username = "gw-001" and password_env = "COLLECTOR_MQTT_PASSWORD"; '
            "or allow_insecure = true on a network you trust")
    return settings
