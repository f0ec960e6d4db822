"""Request counts and latency histograms in the Prometheus text format (version 0.0.4)."""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Callable

__all__ = ["BUCKETS", "Metrics"]

#: Upper bounds (seconds) of the latency histogram's buckets.
BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class Metrics:
    """Counters by (method, route, status) and one latency histogram per route."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.buckets: dict[str, list[int]] = {}
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests[(method, route, status)] += 1
            counts = self.buckets.setdefault(route, [0] * (len(BUCKETS) + 1))
            counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            self.sums[route] += seconds
            self.counts[route] += 1

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.gauges[name] = (help_text, read)

    def render(self) -> str:
        out = [
            "# HELP dmf_requests_total HTTP requests answered, by method, route and status.",
            "# TYPE dmf_requests_total counter",
        ]
        with self.lock:
            requests = sorted(self.requests.items())
            hist = {r: (list(c), self.sums[r], self.counts[r]) for r, c in self.buckets.items()}
        for (method, route, status), n in requests:
            out.append(
                f'dmf_requests_total{{method="{method}",route="{route}",status="{status}"}} {n}'
            )
        out += [
            "# HELP dmf_request_duration_seconds Time from request to response, by route.",
            "# TYPE dmf_request_duration_seconds histogram",
        ]
        for route in sorted(hist):
            counts, total, n = hist[route]
            running = 0
            for bound, c in zip((*BUCKETS, float("inf")), counts, strict=True):
                running += c
                le = "+Inf" if bound == float("inf") else repr(bound)
                out.append(
                    f'dmf_request_duration_seconds_bucket{{route="{route}",le="{le}"}} {running}'
                )
            out.append(f'dmf_request_duration_seconds_sum{{route="{route}"}} {total!r}')
            out.append(f'dmf_request_duration_seconds_count{{route="{route}"}} {n}')
        for name, (help_text, read) in sorted(self.gauges.items()):
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {read()!r}"]
        return "\n".join(out) + "\n"
