"""What the gateway routes to and what it measured, shared by the service controller
(a thread that writes endpoints and reads load) and the gateway (an asyncio loop that
picks endpoints and records requests).

Contract: every method is safe from any thread; waiters are woken on their own loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Service:
    #: endpoint key (the replica's job id) → port
    endpoints: dict[str, str] = field(default_factory=dict)
    inflight: dict[str, int] = field(default_factory=dict)
    waiting: int = 0
    requests: int = 0
    errors: int = 0
    #: (time, seconds) of recent requests, for latency and RPS.
    recent: list[tuple[float, float]] = field(default_factory=list)
    #: The last endpoint picked: ties go round-robin from it.
    last: str = ""
    waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(default_factory=list)


class Registry:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._services: dict[str, _Service] = {}
        self._models: dict[str, str] = {}
        self.clock = clock

    def _svc(self, name: str) -> _Service:
        return self._services.setdefault(name, _Service())

    # -- the controller's side ---------------------------------------------------------

    def set_endpoints(self, service: str, endpoints: dict[str, str]) -> None:
        """The ready replicas of ``service`` (key → ``host:port``); wakes held requests."""
        with self._lock:
            svc = self._svc(service)
            svc.endpoints = dict(endpoints)
            for k in list(svc.inflight):
                if k not in endpoints and not svc.inflight[k]:
                    del svc.inflight[k]
            wake, svc.waiters = (svc.waiters, []) if endpoints else ([], svc.waiters)
        for loop, ev in wake:
            loop.call_soon_threadsafe(ev.set)

    def declare(self, service: str) -> None:
        """A service just applied: known (its requests are held) before the controller's
        next tick publishes its replicas."""
        with self._lock:
            self._svc(service)

    def set_models(self, models: dict[str, str]) -> None:
        with self._lock:
            self._models = dict(models)

    def forget(self, keep: set[str]) -> None:
        """Drops services not in ``keep`` (deleted); their held requests get 503."""
        with self._lock:
            gone = [n for n in self._services if n not in keep]
            wake = [w for n in gone for w in self._services.pop(n).waiters]
        for loop, ev in wake:
            loop.call_soon_threadsafe(ev.set)

    def sample(self, service: str) -> tuple[float, float, int]:
        """(requests in flight, requests/s since the last sample, requests held)."""
        with self._lock:
            svc = self._svc(service)
            now = self.clock()
            svc.recent = [(t, d) for t, d in svc.recent if now - t <= 60.0]
            window = [t for t, _ in svc.recent if now - t <= 1.0]
            return float(sum(svc.inflight.values()) + svc.waiting), float(len(window)), svc.waiting

    def stats(self) -> dict[str, dict[str, float]]:
        """Per service: requests, errors, in flight, held, p50/p99 latency (60 s)."""
        out = {}
        with self._lock:
            for name, svc in self._services.items():
                lat = sorted(d for _, d in svc.recent)
                out[name] = {
                    "requests": float(svc.requests), "errors": float(svc.errors),
                    "inflight": float(sum(svc.inflight.values())), "waiting": float(svc.waiting),
                    "p50": lat[len(lat) // 2] if lat else 0.0,
                    "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else 0.0,
                }  # fmt: skip
        return out

    # -- the gateway's side ------------------------------------------------------------

    def service_for_model(self, model: str) -> str | None:
        with self._lock:
            return self._models.get(model)

    def models(self) -> dict[str, str]:
        with self._lock:
            return dict(self._models)

    def known(self, service: str) -> bool:
        with self._lock:
            return service in self._services

    def pick(self, service: str, avoid: str | None = None) -> tuple[str, str] | None:
        """The ready endpoint with the fewest requests in flight (least outstanding
        requests; ties in turn), counted as taken; None if there is none."""
        with self._lock:
            svc = self._svc(service)
            keys = sorted(k for k in svc.endpoints if k != avoid) or sorted(svc.endpoints)
            if not keys:
                return None
            least = min(svc.inflight.get(k, 0) for k in keys)
            tied = [k for k in keys if svc.inflight.get(k, 0) == least]
            key = next((k for k in tied if k > svc.last), tied[0])
            svc.last = key
            svc.inflight[key] = svc.inflight.get(key, 0) + 1
            return key, svc.endpoints[key]

    def done(self, service: str, key: str, seconds: float, ok: bool) -> None:
        with self._lock:
            svc = self._svc(service)
            svc.inflight[key] = max(0, svc.inflight.get(key, 0) - 1)
            svc.requests += 1
            svc.errors += 0 if ok else 1
            svc.recent.append((self.clock(), seconds))

    async def wait_ready(self, service: str, timeout: float) -> bool:
        """Holds a request until ``service`` has a ready replica, up to ``timeout``."""
        ev = asyncio.Event()
        with self._lock:
            svc = self._svc(service)
            if svc.endpoints:
                return True
            svc.waiting += 1
            svc.waiters.append((asyncio.get_running_loop(), ev))
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                svc.waiting -= 1
                svc.waiters = [(lp, e) for lp, e in svc.waiters if e is not ev]
        with self._lock:
            return bool(self._services.get(service, _Service()).endpoints)
