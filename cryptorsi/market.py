"""Market vocabulary shared by sources, agents and storage: timeframes, coins, markets, candle frames.

A *candle frame* is a ``pandas.DataFrame`` indexed by the candle **open time** (``DatetimeIndex``, UTC,
strictly increasing, named ``open_time``) with float columns ``open, high, low, close, volume``.
Missing candles are simply absent rows; they are never filled.

>>> timeframe_ms("4h")
14400000
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "CANDLE_COLUMNS",
    "TIMEFRAMES",
    "Coin",
    "Market",
    "Listing",
    "timeframe_ms",
    "empty_candles",
    "candles_from_arrays",
    "candles_from_table",
    "candle_table",
    "to_ms",
    "from_ms",
    "open_times_ms",
]

CANDLE_COLUMNS = ("open", "high", "low", "close", "volume")

#: Binance spot kline intervals of fixed length, in milliseconds ("1M" has no fixed length and is not offered).
TIMEFRAMES: dict[str, int] = {
    "1m": 60_000,
    "3m": 3 * 60_000,
    "5m": 5 * 60_000,
    "15m": 15 * 60_000,
    "30m": 30 * 60_000,
    "1h": 3_600_000,
    "2h": 2 * 3_600_000,
    "4h": 4 * 3_600_000,
    "6h": 6 * 3_600_000,
    "8h": 8 * 3_600_000,
    "12h": 12 * 3_600_000,
    "1d": 86_400_000,
    "3d": 3 * 86_400_000,
    "1w": 7 * 86_400_000,
}


def timeframe_ms(timeframe: str) -> int:
    """Length of one candle of ``timeframe`` in milliseconds; ``ValueError`` for an unknown timeframe."""
    try:
        return TIMEFRAMES[timeframe]
    except KeyError:
        raise ValueError(
            f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAMES)}"
        ) from None


@dataclass(frozen=True)
class Coin:
    """A coin as CoinGecko lists it (``coin_id`` is CoinGecko's id; ``symbol`` is upper-case)."""

    coin_id: str
    symbol: str
    name: str
    market_cap: float | None = None
    market_cap_rank: int | None = None


@dataclass(frozen=True)
class Market:
    """A spot market of the exchange: ``pair`` is ccxt's unified symbol, e.g. ``"ETH/USDC"``."""

    pair: str
    base: str
    quote: str
    active: bool = True


@dataclass(frozen=True)
class Listing:
    """A coin chosen for analysis and the exchange pair its candles come from."""

    coin: Coin
    exchange: str
    pair: str
    quote: str

    @property
    def coin_id(self) -> str:
        return self.coin.coin_id

    @property
    def symbol(self) -> str:
        return self.coin.symbol


def to_ms(ts: pd.Timestamp | str | int) -> int:
    """UTC milliseconds since the epoch of a timestamp (naive timestamps are taken as UTC)."""
    if isinstance(ts, (int, np.integer)):
        return int(ts)
    t = pd.Timestamp(ts)
    if t.tzinfo is None:
        t = t.tz_localize("UTC")
    return int(t.value // 1_000_000)


def from_ms(ms: int) -> pd.Timestamp:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC")


def open_times_ms(index: pd.DatetimeIndex | pd.DataFrame | pd.Series) -> np.ndarray:
    """Open times of a candle frame, series or index as int64 UTC milliseconds (whatever the index unit)."""
    if not isinstance(index, pd.DatetimeIndex):
        index = index.index
    return index.as_unit("ms").asi8


def empty_candles() -> pd.DataFrame:
    """A candle frame with no rows."""
    return candles_from_arrays(np.empty(0, dtype=np.int64), *(np.empty(0) for _ in CANDLE_COLUMNS))


def _open_time_index(open_time_ms) -> pd.DatetimeIndex:
    """UTC open times in milliseconds as the ``open_time`` index of a candle frame."""
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(open_time_ms, dtype=np.int64), unit="ms", utc=True),
                            name="open_time")


def _candle_frame(index: pd.DatetimeIndex, columns: np.ndarray) -> pd.DataFrame:
    """A candle frame over ``columns``, a C-contiguous (5, n) float64 array taken as it is: pandas keeps a frame's
    float columns as one such block, so handing it over saves the copy a dict of columns costs."""
    return pd.DataFrame(columns.T, index=index, columns=list(CANDLE_COLUMNS), copy=False)


def candles_from_arrays(open_time_ms, open_, high, low, close, volume) -> pd.DataFrame:
    """Build a candle frame from column arrays (open times in UTC milliseconds)."""
    index = _open_time_index(open_time_ms)
    columns = np.empty((len(CANDLE_COLUMNS), len(index)))
    for row, values in enumerate((open_, high, low, close, volume)):
        columns[row] = np.asarray(values, dtype=np.float64)
    return _candle_frame(index, columns)


def candles_from_table(table: np.ndarray) -> pd.DataFrame:
    """A candle frame from an (n, 6) array of rows ``[open time in UTC ms, open, high, low, close, volume]``."""
    columns = np.ascontiguousarray(table[:, 1:].T, dtype=np.float64)
    return _candle_frame(_open_time_index(table[:, 0].astype(np.int64)), columns)


def candle_table(candles: pd.DataFrame) -> np.ndarray:
    """A candle frame as an (n, 6) float64 array of rows ``[open time in UTC ms, open, high, low, close, volume]``
    (missing values NaN): the inverse of :func:`candles_from_table` (open times in ms are exact in float64)."""
    table = np.empty((len(candles), 6))
    table[:, 0] = open_times_ms(candles)
    for i, column in enumerate(CANDLE_COLUMNS, start=1):
        table[:, i] = candles[column].to_numpy(dtype=np.float64, na_value=np.nan)
    return table
