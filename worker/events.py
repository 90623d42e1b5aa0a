"""Task events only while someone is watching.

Celery's task events (received, started, succeeded: three publishes per job) are what Flower shows,
and they cost every job broker round trips and CPU whether or not anyone looks; for one-text jobs
that was the largest part of Celery's per-job cost. So workers start without them, and Flower turns
them on: it sends `enable_events` to all workers every few seconds while it runs. A worker that has
heard no `enable_events` for `quiet_s` turns them off again. Worker heartbeats (who is online) are
sent throughout, so Flower still lists the workers while task events are off.
"""
from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("embedq.worker")

QUIET_S = 30.0  # Flower repeats enable_events every 5 s by default


class EventsWhileWatched:
    def __init__(self, quiet_s: float = QUIET_S):
        self.quiet_s = quiet_s
        self.last_enable: float | None = None
        self._state = None
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def install(self) -> "EventsWhileWatched":
        from celery.worker.control import Panel

        enable = Panel.data["enable_events"]
        self._disable = Panel.data["disable_events"]

        def enable_events(state):
            with self._lock:
                self.last_enable, self._state = time.monotonic(), state
            return enable(state)

        Panel.data["enable_events"] = enable_events
        threading.Thread(target=self._watch, name="embedq-events", daemon=True).start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(min(5.0, self.quiet_s / 3)):
            with self._lock:
                quiet = self.last_enable is not None and time.monotonic() - self.last_enable > self.quiet_s
                state = self._state
                if quiet:
                    self.last_enable = None
            if quiet:
                log.info("no one has asked for task events for %.0f s; turning them off", self.quiet_s)
                try:
                    self._disable(state)
                except Exception:
                    log.exception("could not turn task events off")

    def close(self) -> None:
        self._stop.set()
