"""Every event that crosses the service bus, as frozen dataclasses. The event's class is its topic.

Facts are in the past tense (``RSICalculated``); requests end in ``Requested``. On the in-process bus
events travel as the objects themselves (DataFrames included, never serialised); a network bus encodes
them compactly. Every event of an analysis carries its ``session_id``.

Flow of one analysis (``CryptoAnalyzer`` orchestrates, one ``AnalysisJob`` per timeframe)::

    SessionStarted ─ FetchTopCoinsRequested → TopCoinsFetched
      → per timeframe and coin: FetchHistoricalPricesRequested → HistoricalPricesFetched (saved)
      → CalculateRSIRequested → RSICalculated (saved) → CorrelationAnalyzed (saved)
        (or CoinProcessingFailed with a reason, at any stage)
      → FinalResultsReady (saved) → ResultsSaved, DisplayCompleted
    RunFailed ends a session that cannot complete; TaskFailed reports an unexpected agent error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from cryptorsi.market import Coin, Listing

__all__ = [
    "Event",
    "SessionStarted",
    "FetchTopCoinsRequested",
    "TopCoinsFetched",
    "ExcludedCoin",
    "SourceSpec",
    "FetchHistoricalPricesRequested",
    "HistoricalPricesFetched",
    "CalculateRSIRequested",
    "RSICalculated",
    "CorrelationAnalyzed",
    "CoinProcessingFailed",
    "FinalResultsReady",
    "ResultsSaved",
    "DisplayCompleted",
    "RunFailed",
    "TaskFailed",
    "ProgressUpdated",
    "FetchProgress",
    "EVENT_TYPES",
]


@dataclass(frozen=True)
class Event:
    session_id: str


@dataclass(frozen=True)
class SessionStarted(Event):
    """An analysis begins; ``config`` is the :class:`~cryptorsi.config.AnalysisConfig` as a dict (no API key)."""

    config: dict[str, Any]
    started_at: pd.Timestamp


@dataclass(frozen=True)
class SourceSpec:
    """Which market source serves a request, so that a fetcher in any process can serve any analysis.

    ``name`` is live, sample or cache; the URLs are root URLs (None: the public endpoints); ``db_path``
    is the database a ``cache`` source reads. API keys are never part of it: each process has its own.
    """

    name: str
    exchange_url: str | None = None
    coingecko_url: str | None = None
    db_path: str | None = None
    #: live: most exchange requests in flight at once (None: the source's default)
    requests_in_flight: int | None = None
    #: live: the ccxt id of the exchange
    exchange: str = "binance"


@dataclass(frozen=True)
class FetchTopCoinsRequested(Event):
    source: SourceSpec
    top_n: int
    quotes: tuple[str, ...]
    benchmark: str
    include_stablecoins: bool


@dataclass(frozen=True)
class ExcludedCoin:
    """A top coin left out of the analysis, and why (no pair on the exchange, stablecoin, wrapped...)."""

    coin: Coin
    reason: str


@dataclass(frozen=True)
class TopCoinsFetched(Event):
    """The universe of the analysis: coins with a trading pair, largest first, and those left out."""

    listings: tuple[Listing, ...]
    excluded: tuple[ExcludedCoin, ...] = ()


@dataclass(frozen=True)
class FetchHistoricalPricesRequested(Event):
    source: SourceSpec
    listing: Listing
    timeframe: str
    start_ms: int  # inclusive open time
    end_ms: int  # exclusive open time


@dataclass(frozen=True)
class HistoricalPricesFetched(Event):
    """Candles of one coin and timeframe over the analysis window.

    ``uncached`` holds the rows the candle cache did not have yet (what the DatabaseManager must store);
    ``candles`` is the whole window (cached and new rows).
    """

    listing: Listing
    timeframe: str
    candles: pd.DataFrame
    uncached: pd.DataFrame


@dataclass(frozen=True)
class CalculateRSIRequested(Event):
    listing: Listing
    timeframe: str
    close: pd.Series
    period: int
    method: str


@dataclass(frozen=True)
class RSICalculated(Event):
    listing: Listing
    timeframe: str
    rsi: pd.Series  # UTC open-time index, no NaN
    period: int
    method: str


@dataclass(frozen=True)
class CorrelationAnalyzed(Event):
    """A coin's correlation with the benchmark; ``metrics`` holds the lead-lag, stability and significance
    columns (``best_lag``, ``best_lag_correlation``, ``stability``, ``n_eff``, ``p_value``, ``ci_low``,
    ``ci_high``, ``return_correlation``; None where undefined)."""

    listing: Listing
    timeframe: str
    correlation: float
    n_points: int
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CoinProcessingFailed(Event):
    """One coin could not be analysed on one timeframe; ``stage`` is fetch, rsi or correlation."""

    listing: Listing
    timeframe: str
    stage: str
    reason: str


@dataclass(frozen=True)
class FinalResultsReady(Event):
    """Every job is done. ``correlations`` has the columns of ``AnalysisResult.correlations``.

    ``expected`` counts what the DatabaseManager must have saved before the session is complete
    (keys ``prices``, ``rsi``, ``correlations``, ``failures``): on a network bus events of different
    types may arrive in any order.
    """

    correlations: pd.DataFrame
    failures: pd.DataFrame
    low_cap_threshold: float | None
    synthetic: bool
    expected: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ResultsSaved(Event):
    """The DatabaseManager committed the final results and closed the session as ``status`` (``reason``: why
    a session ``failed``)."""

    status: str
    reason: str | None = None


@dataclass(frozen=True)
class DisplayCompleted(Event):
    pass


@dataclass(frozen=True)
class RunFailed(Event):
    """The analysis cannot complete; ``reason`` is one line for the user."""

    reason: str


@dataclass(frozen=True)
class TaskFailed(Event):
    """An agent's task raised unexpectedly (logged with its traceback by the agent)."""

    agent: str
    task: str
    error: str


@dataclass(frozen=True)
class ProgressUpdated(Event):
    """Progress of one timeframe's job: ``done`` of ``total`` coins finished (analysed or failed)."""

    timeframe: str
    done: int
    total: int
    failed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FetchProgress(Event):
    """HTTP requests of one timeframe's candle downloads (the live source): ``requests_done`` of
    ``requests_planned``, and ``coins_done`` of ``coins_total`` coins whose candles were fetched or failed.

    ``requests_planned`` starts as an estimate (every coin's whole window, 1000 candles a request) and is
    refined as each coin is read from the cache and fetched (cached spans are not asked again; retries
    add requests); it is never below ``requests_done``, and equals it once ``coins_done == coins_total``.
    Published by the DataFetcher a few times a second at most.
    """

    timeframe: str
    requests_done: int
    requests_planned: int
    coins_done: int = 0
    coins_total: int = 0


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        SessionStarted,
        FetchTopCoinsRequested,
        TopCoinsFetched,
        FetchHistoricalPricesRequested,
        HistoricalPricesFetched,
        CalculateRSIRequested,
        RSICalculated,
        CorrelationAnalyzed,
        CoinProcessingFailed,
        FinalResultsReady,
        ResultsSaved,
        DisplayCompleted,
        RunFailed,
        TaskFailed,
        ProgressUpdated,
        FetchProgress,
    )
}
