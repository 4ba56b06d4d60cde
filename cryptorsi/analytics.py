"""Pure analysis functions: correlation on aligned timestamps, low-cap percentile (no threads, no I/O)."""

from __future__ import annotations

import numpy as np

__all__ = ["low_cap_threshold"]


def low_cap_threshold(market_caps, percentile: float) -> float | None:
    """Market cap at the ``percentile`` (0-100, linear interpolation) of the caps that are > 0.

    A coin is *low cap* when its market cap is at or below this value. ``None`` when no cap is > 0.

    >>> low_cap_threshold([10, 20, 30, 40, 0, None], 50)
    25.0
    """
    caps = np.asarray([c for c in market_caps if c is not None], dtype=np.float64)
    caps = caps[np.isfinite(caps) & (caps > 0)]
    if caps.size == 0:
        return None
    return float(np.percentile(caps, percentile))
