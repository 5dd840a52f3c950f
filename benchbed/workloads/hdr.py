"""A small log-linear latency histogram (HDR-style), stdlib-only: it runs inside the agent, which may not depend on
a pip package, and on the controller, so both load paths record latency the same way.

A value v (integer nanoseconds) lands in the bucket [v >> s << s, +2**s) where s = max(0, bit_length(v) - SUB_BITS):
below 2**SUB_BITS every value is its own bucket; above, each power of two is cut into 2**(SUB_BITS-1) equal
buckets. A bucket is reported by its midpoint, so any percentile is within 2**-SUB_BITS (0.2 % at SUB_BITS=9) of a
recorded value's true size: as precise as HdrHistogram with 2-3 significant digits, in a dict of counts, whatever
the number of requests. It serialises to JSON (`to_json`), so the controller's results travel to the agent.
"""

from __future__ import annotations

from typing import Any

SUB_BITS = 9
PRECISION = 2.0**-SUB_BITS  # worst relative error of a reported value


def bucket(value: int) -> int:
    """The lower bound of the bucket `value` falls into."""
    shift = max(0, value.bit_length() - SUB_BITS)
    return (value >> shift) << shift


def width(lower: int) -> int:
    return 1 << max(0, lower.bit_length() - SUB_BITS)


class Histogram:
    """Counts of latencies (ns) by log-linear bucket; exact count, min, max and sum."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0
        self.min = 0
        self.max = 0
        self.sum = 0

    def record(self, value_ns: int) -> None:
        v = max(0, int(value_ns))
        b = bucket(v)
        self.counts[b] = self.counts.get(b, 0) + 1
        if self.total == 0 or v < self.min:
            self.min = v
        self.max = max(self.max, v)
        self.total += 1
        self.sum += v

    def merge(self, other: Histogram) -> None:
        for b, n in other.counts.items():
            self.counts[b] = self.counts.get(b, 0) + n
        if other.total:
            self.min = other.min if self.total == 0 else min(self.min, other.min)
            self.max = max(self.max, other.max)
        self.total += other.total
        self.sum += other.sum

    def percentile(self, q: float) -> float:
        """The q-th percentile (0-100) in ns: the midpoint of the bucket holding it, clamped to [min, max]."""
        if self.total == 0:
            return float("nan")
        rank = max(1, -(-self.total * q // 100))  # ceil: p100 is the largest value, p0 the smallest
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                return float(min(self.max, max(self.min, b + (width(b) - 1) / 2)))
        return float(self.max)

    def mean(self) -> float:
        return self.sum / self.total if self.total else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {
            "counts": [[b, n] for b, n in sorted(self.counts.items())],
            "min": self.min,
            "max": self.max,
            "sum": self.sum,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Histogram:
        h = cls()
        for b, n in data.get("counts", []):
            h.counts[int(b)] = int(n)
            h.total += int(n)
        h.min, h.max, h.sum = int(data.get("min", 0)), int(data.get("max", 0)), int(data.get("sum", 0))
        return h
