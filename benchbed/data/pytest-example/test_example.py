"""A tiny pytest-benchmark suite for `benchbed run workloads/pytest.yaml`: stdlib-only, so it runs in every target
that has pytest and pytest-benchmark. Each round takes a few milliseconds, well above timer resolution."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import pytest


@pytest.mark.parametrize("n", [20_000, 50_000])
def test_sort(benchmark: Any, n: int) -> None:
    data = random.Random(n).sample(range(n * 10), n)
    result = benchmark(sorted, data)
    assert result[0] == min(data)


def test_json_roundtrip(benchmark: Any) -> None:
    doc = {"rows": [{"id": i, "name": f"row-{i}", "tags": ["a", "b"], "x": i / 7} for i in range(2_000)]}
    assert benchmark(lambda: json.loads(json.dumps(doc))) == doc


def test_sha256(benchmark: Any) -> None:
    blob = random.Random(1).randbytes(8 * 1024 * 1024)
    assert len(benchmark(lambda: hashlib.sha256(blob).digest())) == 32
