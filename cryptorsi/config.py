"""``AnalysisConfig``: every parameter of one analysis, validated when it is made.

>>> cfg = AnalysisConfig(source="sample", top_n_coins=50, timeframes="1h,1d")
>>> cfg.timeframes
('1h', '1d')
>>> AnalysisConfig(top_n_coins=0)
Traceback (most recent call last):
...
cryptorsi.errors.ConfigError: top_n_coins: must be a whole number >= 1, got 0
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from cryptorsi.errors import ConfigError
from cryptorsi.exchanges import default_quotes
from cryptorsi.market import TIMEFRAMES

__all__ = ["AnalysisConfig", "SOURCES", "RSI_METHODS"]

SOURCES = ("live", "sample", "cache")
RSI_METHODS = ("wilder", "sma")
_URL_ROOT = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+(:\d{1,5})?/?$")
_BUS_URL = re.compile(r"^(memory://|rediss?://[^\s]+)$")
_EXCHANGE_ID = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class AnalysisConfig:
    """The parameters of one analysis. A bad value raises ``ConfigError`` (a ``ValueError``) naming the field.

    ``timeframes`` and ``quote`` accept a comma-separated string or a sequence; ``quote`` may be a
    preference list such as ``"USDC,USDT"`` (the first that trades is used). ``end`` is the exclusive
    end of the window, a UTC datetime (``None``: now, or the end of the sample market for
    ``source="sample"``).
    """

    top_n_coins: int = 200
    timeframes: tuple[str, ...] = ("1h", "1d")
    weeks: float = 50
    end: datetime | None = None
    rsi_period: int = 14
    rsi_method: str = "wilder"
    correlation_threshold: float = 0.7
    low_cap_percentile: float = 25.0
    #: None: the preference that fits the exchange (USDC; USD,USDC on Coinbase and Kraken)
    quote: tuple[str, ...] | None = None
    benchmark: str = "BTC"
    source: str = "live"
    db_path: str = "crypto_data.db"
    bus_url: str = "memory://"
    status_port: int | None = None
    #: a ccxt exchange id with candles (fetchOHLCV): binance, binanceus, okx, bybit, coinbase, kraken...
    exchange: str = "binance"
    #: the exchange's API root (None: its public host; for Binance its market-data host data-api.binance.vision)
    exchange_url: str | None = None
    #: the API root of the Binance family (binance, binanceus): another name for exchange_url
    binance_url: str | None = None
    coingecko_url: str | None = None
    coingecko_api_key: str | None = field(default=None, repr=False, compare=False)
    include_stablecoins: bool = False
    #: live: most exchange requests in flight at once, within the shared weight budget (None: the source's
    #: default, 10 — chosen at 150 ms latency, see docs/live.md)
    requests_in_flight: int | None = None
    #: fewest common timestamps for a correlation; below it the coin fails with "insufficient overlap"
    min_overlap: int = 30
    #: lead-lag: lags from -max_lag to +max_lag candles are tried (positive: the coin follows BTC)
    max_lag: int = 12
    #: rolling correlation window in common candles (None: 30 days of candles of each timeframe)
    rolling_window: int | None = None
    #: selection filter on the share of rolling windows with |correlation| >= threshold (None: off)
    min_stability: float | None = None

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen dataclass
        put("top_n_coins", _whole("top_n_coins", self.top_n_coins, low=1, high=10_000))
        put("timeframes", _timeframes(self.timeframes))
        put("weeks", _number("weeks", self.weeks, low=0, low_inclusive=False, high=1040))
        put("end", _end(self.end))
        put("rsi_period", _whole("rsi_period", self.rsi_period, low=2, high=1000))
        put("rsi_method", _choice("rsi_method", self.rsi_method, RSI_METHODS))
        put("correlation_threshold", _number("correlation_threshold", self.correlation_threshold, low=0, high=1))
        put("low_cap_percentile", _number("low_cap_percentile", self.low_cap_percentile, low=0, high=100))
        put("benchmark", _ticker("benchmark", self.benchmark))
        put("source", _choice("source", self.source, SOURCES))
        if not str(self.db_path).strip():
            raise ConfigError("db_path", "must not be empty")
        put("db_path", str(Path(self.db_path).expanduser()))
        if not isinstance(self.bus_url, str) or not _BUS_URL.match(self.bus_url):
            raise ConfigError("bus_url", f"must be memory:// or redis://host:port/db, got {self.bus_url!r}")
        if self.status_port is not None:
            put("status_port", _whole("status_port", self.status_port, low=0, high=65535))
        if not isinstance(self.exchange, str) or not _EXCHANGE_ID.match(self.exchange.strip().lower()):
            raise ConfigError("exchange", f"must be a ccxt exchange id such as binance or okx, got {self.exchange!r}")
        put("exchange", self.exchange.strip().lower())
        put("quote", _quotes(self.quote) if self.quote is not None else default_quotes(self.exchange))
        for name in ("exchange_url", "binance_url", "coingecko_url"):
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, str) or not _URL_ROOT.match(value):
                    raise ConfigError(name, f"must be a root URL scheme://host[:port], got {value!r}")
                put(name, value.rstrip("/"))
        if not isinstance(self.include_stablecoins, bool):
            raise ConfigError("include_stablecoins", f"must be True or False, got {self.include_stablecoins!r}")
        if self.requests_in_flight is not None:
            put("requests_in_flight", _whole("requests_in_flight", self.requests_in_flight, low=1, high=64))
        put("min_overlap", _whole("min_overlap", self.min_overlap, low=2, high=10_000_000))
        put("max_lag", _whole("max_lag", self.max_lag, low=0, high=1000))
        if self.rolling_window is not None:
            put("rolling_window", _whole("rolling_window", self.rolling_window, low=2, high=10_000_000))
        if self.min_stability is not None:
            put("min_stability", _number("min_stability", self.min_stability, low=0, high=1))

    # ------------------------------------------------------------------ helpers
    def replace(self, **changes: Any) -> "AnalysisConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready values, without the API key (which is never stored)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "coingecko_api_key":
                continue
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, datetime):
                value = value.isoformat()
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "AnalysisConfig":
        """Inverse of :meth:`to_dict`; unknown keys are ignored (configs of older versions still load)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items() if k in known})

    @property
    def window_ms(self) -> int:
        """Length of the analysis window in milliseconds."""
        return int(round(self.weeks * 7 * 86_400_000))


def _whole(name: str, value: Any, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(name, f"must be a whole number >= {low}, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(name, f"must be a whole number >= {low}, got {value!r}") from None
    if not math.isfinite(number) or number != int(number):
        raise ConfigError(name, f"must be a whole number >= {low}, got {value!r}")
    number = int(number)
    if number < low:
        raise ConfigError(name, f"must be a whole number >= {low}, got {value!r}")
    if number > high:
        raise ConfigError(name, f"must be at most {high}, got {value!r}")
    return number


def _number(name: str, value: Any, *, low: float, high: float, low_inclusive: bool = True) -> float:
    if isinstance(value, bool):
        raise ConfigError(name, f"must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(name, f"must be a number, got {value!r}") from None
    too_low = number < low if low_inclusive else number <= low
    if not math.isfinite(number) or too_low or number > high:
        bound = f"{'>=' if low_inclusive else '>'} {low:g} and <= {high:g}"
        raise ConfigError(name, f"must be {bound}, got {value!r}")
    return number


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    text = str(value).strip().lower() if isinstance(value, str) else value
    if text not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return text


def _split(value: Any) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    try:
        return [str(part).strip() for part in value]
    except TypeError:
        return [str(value)]


def _timeframes(value: Any) -> tuple[str, ...]:
    items = _split(value)
    if not items:
        raise ConfigError("timeframes", "must name at least one timeframe, e.g. 1h,4h,1d")
    out: list[str] = []
    for item in items:
        if item not in TIMEFRAMES:
            raise ConfigError("timeframes", f"unknown timeframe {item!r}; use one of {', '.join(TIMEFRAMES)}")
        if item not in out:
            out.append(item)
    return tuple(out)


def _ticker(name: str, value: Any) -> str:
    text = str(value).strip().upper() if isinstance(value, str) else ""
    if not re.fullmatch(r"[A-Z0-9]{1,20}", text):
        raise ConfigError(name, f"must be a ticker such as BTC, got {value!r}")
    return text


def _quotes(value: Any) -> tuple[str, ...]:
    items = _split(value)
    if not items:
        raise ConfigError("quote", "must name a quote asset such as USDC")
    return tuple(dict.fromkeys(_ticker("quote", item) for item in items))


def _end(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise ConfigError("end", f"must be a UTC date or datetime such as 2025-06-30, got {value!r}") from None
    if ts is pd.NaT:
        raise ConfigError("end", f"must be a UTC date or datetime, got {value!r}")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()
