"""Every background task runs under a supervisor: a task that dies is logged with its
traceback, counted and restarted with backoff, and a task that keeps dying is visible
in the health status instead of silently gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from collector.errors import CollectorError
from collector.ops.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass
class TaskState:
    failures: deque[float] = field(default_factory=lambda: deque(maxlen=16))
    last_error: str = ""
    running: bool = False


class Supervisor:
    def __init__(self, metrics: Metrics | None = None, *, initial_s: float = 1.0,
                 max_s: float = 60.0, loop_window_s: float = 300.0, loop_count: int = 3) -> None:
        self.metrics = metrics or Metrics()
        self.initial_s = initial_s
        self.max_s = max_s
        self.loop_window_s = loop_window_s
        self.loop_count = loop_count
        self.tasks: dict[str, TaskState] = defaultdict(TaskState)
        self.stopping = asyncio.Event()

    def start(self, name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        return asyncio.create_task(self._keep(name, run), name=name)

    def stop(self) -> None:
        self.stopping.set()

    async def _keep(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        state = self.tasks[name]
        delay = self.initial_s
        while not self.stopping.is_set():
            started = time.monotonic()
            state.running = True
            try:
                await run()
                if self.stopping.is_set():
                    return
                state.last_error = "returned while the daemon was running"
                log.error("%s stopped by itself; restarting in %.0f s", name, delay,
                          extra={"task": name})
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.stopping.is_set():
                    log.warning("%s failed while stopping: %s", name, exc, extra={"task": name})
                    return
                state.last_error = str(exc) or type(exc).__name__
                # Our own errors already say what to fix; anything else is a bug: keep
                # its traceback.
                log.error("%s failed: %s; restarting in %.0f s", name, state.last_error, delay,
                          exc_info=not isinstance(exc, CollectorError), extra={"task": name})
            finally:
                state.running = False
            state.failures.append(time.monotonic())
            self.metrics.task_restarts.labels(name).inc()
            if time.monotonic() - started > self.max_s:
                delay = self.initial_s  # it ran well for a while: this is a new failure
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            delay = min(delay * 2, self.max_s)

    def restart_loops(self) -> dict[str, str]:
        """Tasks that failed `loop_count` times within the window, with their last error."""
        now = time.monotonic()
        return {name: s.last_error for name, s in self.tasks.items()
                if sum(1 for t in s.failures if now - t < self.loop_window_s) >= self.loop_count}

    def failing(self) -> dict[str, str]:
        """Tasks whose last run ended in an error and that are waiting to restart."""
        return {name: s.last_error for name, s in self.tasks.items()
                if not s.running and s.last_error and not self.stopping.is_set()}
