"""Candle-grid arithmetic: analysis windows and the spans a cache is missing (pure functions).

Open times are UTC milliseconds. Candles of a timeframe open on multiples of its length since the
epoch, except weekly candles, which open on Mondays (as on Binance).

>>> analysis_window(end_ms=86_400_000 * 10, weeks=1, timeframe="1d")
(259200000, 864000000)
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from cryptorsi.market import timeframe_ms

__all__ = ["grid_floor", "analysis_window", "missing_spans"]

_MONDAY_OFFSET_MS = 4 * 86_400_000  # 1970-01-01 was a Thursday; weekly candles open on Mondays


def grid_floor(ms: int, timeframe: str) -> int:
    """The open time of the candle of ``timeframe`` that contains instant ``ms``."""
    step = timeframe_ms(timeframe)
    offset = _MONDAY_OFFSET_MS if timeframe == "1w" else 0
    return (int(ms) - offset) // step * step + offset


def analysis_window(end_ms: int, weeks: float, timeframe: str) -> tuple[int, int]:
    """``[start, end)`` open times of the closed candles of the ``weeks`` before ``end_ms``.

    ``end`` is floored to the candle grid, so the candle containing ``end_ms`` (possibly still open)
    is left out; the window holds ``weeks * 7 days / timeframe`` candles (rounded down).
    """
    step = timeframe_ms(timeframe)
    end = grid_floor(end_ms, timeframe)
    count = int(weeks * 7 * 86_400_000 // step)
    return end - count * step, end


def missing_spans(cached_open_ms: np.ndarray, start_ms: int, end_ms: int, timeframe: str,
                  covered: Iterable[tuple[int, int]] = ()) -> list[tuple[int, int]]:
    """Spans of ``[start_ms, end_ms)`` to fetch given the open times already cached there.

    The cache is trusted between its first and last candle (a hole inside is a candle the exchange
    never had, not one to fetch again), and over the ``covered`` spans ``[(start, end), ...]`` recorded
    as complete (which may hold no candle at all: before a late listing, after a delisting). What is
    left of the window is missing. Nothing cached or covered: the whole window.

    >>> H = 3_600_000
    >>> missing_spans(np.array([5 * H, 6 * H]), 0, 10 * H, "1h", covered=[(0, 3 * H)])
    [(10800000, 18000000), (25200000, 36000000)]
    """
    step = timeframe_ms(timeframe)
    if end_ms <= start_ms:
        return []
    known = [(int(a), int(b)) for a, b in covered]
    if len(cached_open_ms):
        known.append((int(cached_open_ms[0]), int(cached_open_ms[-1]) + step))
    spans = []
    cursor = int(start_ms)
    for a, b in sorted(known):
        if b <= cursor:
            continue
        if a > cursor:
            spans.append((cursor, min(a, end_ms)))
        cursor = max(cursor, b)
        if cursor >= end_ms:
            break
    if cursor < end_ms:
        spans.append((cursor, int(end_ms)))
    return spans
