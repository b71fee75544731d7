"""Failed web logins per client address, so a guessing script is slowed and logged."""

from __future__ import annotations

import math
import time
from collections import deque


class LoginThrottle:
    """Failed logins per client address in a sliding window: past `most`, the address
    waits until the oldest failure leaves the window. A token is 256 random bits, so
    this is no guard for the tokens; it keeps a guessing script from loading the store
    and puts every attempt in the log. Per API process: with several workers the bound
    is per worker."""

    def __init__(self, most: int = 5, window_s: float = 60.0) -> None:
        self.most = most
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str) -> deque[float]:
        times = self._failures.setdefault(client, deque())
        while times and times[0] <= time.monotonic() - self.window_s:
            times.popleft()
        if not times:
            del self._failures[client]
            return deque()
        return times

    def wait(self, client: str) -> int:
        """Seconds this client must wait before its next attempt (0: none)."""
        times = self._recent(client)
        if len(times) < self.most:
            return 0
        return max(1, math.ceil(times[0] + self.window_s - time.monotonic()))

    def failed(self, client: str) -> int:
        times = self._recent(client)
        times.append(time.monotonic())
        self._failures[client] = times
        if len(self._failures) > 10_000:  # a bound on memory, whatever the traffic
            self._failures.pop(next(iter(self._failures)))
        return len(times)
