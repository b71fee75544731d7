"""The one place that reaches past aiomqtt into the paho client it wraps.

aiomqtt exposes neither manual acknowledgement nor the reason code of a PUBACK, and the
no-read-lost guarantees need both: a message is acknowledged only once it is stored, and
a gateway keeps its rows unless the broker says it delivered them. `client._client` is
private, so pyproject.toml pins the aiomqtt versions this was tested with, and
tests/unit/test_paho_adapter.py fails loudly if a release moves or renames it.
"""

from __future__ import annotations

import contextvars
from typing import Any

import aiomqtt

NO_MATCHING_SUBSCRIBERS = 0x10
PAHO_ATTRIBUTES = ("manual_ack_set", "ack", "publish", "on_publish")
"""What this adapter uses of the paho client; the test checks each is still there."""


def _paho(client: aiomqtt.Client) -> Any:
    paho = getattr(client, "_client", None)
    if paho is None or not all(hasattr(paho, name) for name in PAHO_ATTRIBUTES):
        raise RuntimeError("aiomqtt no longer wraps a paho client at Client._client with "
                           f"{', '.join(PAHO_ATTRIBUTES)}; collector/acquisition/"
                           "paho_adapter.py needs updating for this aiomqtt release")
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
