"""The root of every protocol error, so callers can catch one class per layer."""

from __future__ import annotations


class ProtocolError(Exception):
    """A protocol failure, carrying enough context to be logged usefully from the field."""

    def __init__(
        self, message: str, *, meter: str = "", bus: str = "", raw: bytes = b""
    ) -> None:
        super().__init__(message)
        self.message = message
        self.meter = meter
        self.bus = bus
        self.raw = raw

    def with_context(self, *, meter: str = "", bus: str = "") -> ProtocolError:
        self.meter = self.meter or meter
        self.bus = self.bus or bus
        return self

    def __str__(self) -> str:
        parts = [self.message]
        if self.meter:
            parts.append(f"meter={self.meter}")
        if self.bus:
            parts.append(f"bus={self.bus}")
        if self.raw:
            parts.append(f"raw={self.raw.hex(' ')}")
        return " ".join(parts)


class ResponseTimeout(ProtocolError):
    """The device stayed silent past the deadline derived from baud rate and latency."""


class TransportError(ProtocolError):
    """The port or connection itself failed (unplugged adapter, closed socket)."""
