"""Where did the level of a trend move? PELT (ruptures) on the per-run medians, with a BIC penalty.

Rules, stated once:
  * the series is scaled by its median, so the penalty does not depend on the unit;
  * noise σ is estimated robustly from run-to-run differences (MAD / 0.6745 / √2), so a step does not inflate it;
  * PELT with an L2 cost and penalty 6·σ²·ln(n) — three times BIC's (a change costs a location and a level),
    because PELT tries every position: at 2·σ²·ln(n) a flat 20-run series with 0.5 % noise showed a change in
    a quarter of seeds, at 6·σ²·ln(n) in none of 200, while a 5 % step was still found at its run in 197;
  * segments are at least 2 runs;
  * a detected change whose level shift (median of the segment after vs before) is smaller than the metric's
    verdict threshold (`verdict.threshold_for`) is dropped: it may be real, but it does not matter;
  * fewer than 4 runs: no test (nothing can be told apart from noise).
A change point is reported at the first run of the new level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

MIN_RUNS = 4
MIN_SEGMENT = 2
PENALTY = 6.0


@dataclass(frozen=True)
class Shift:
    index: int  # first run of the new level
    before: float  # median of the segment before
    after: float  # median of the segment after

    @property
    def change_pct(self) -> float:
        return (self.after / self.before - 1) * 100 if self.before else math.nan


def detect(values: npt.ArrayLike, *, min_rel: float) -> list[Shift]:
    import ruptures as rpt

    x = np.asarray(values, dtype=float)
    if x.size < MIN_RUNS or not np.all(np.isfinite(x)):
        return []
    scale = float(np.median(np.abs(x))) or 1.0
    y = x / scale
    diffs = np.diff(y)
    sigma = float(np.median(np.abs(diffs - np.median(diffs)))) / 0.6745 / math.sqrt(2)
    sigma = max(sigma, 1e-6)
    penalty = PENALTY * sigma**2 * math.log(x.size)
    ends = rpt.Pelt(model="l2", min_size=MIN_SEGMENT, jump=1).fit(y.reshape(-1, 1)).predict(pen=penalty)
    bounds = [0, *[int(e) for e in ends]]
    shifts = []
    for lo, mid, hi in zip(bounds, bounds[1:], bounds[2:], strict=False):
        before, after = float(np.median(x[lo:mid])), float(np.median(x[mid:hi]))
        if before and abs(after / before - 1) >= min_rel:
            shifts.append(Shift(mid, before, after))
    return shifts
