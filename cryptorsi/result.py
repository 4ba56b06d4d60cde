"""``AnalysisResult``: what one analysis found, and ``retune`` to ask again from cached candles.

>>> result = cr.run_analysis(source="sample", top_n_coins=40)        # doctest: +SKIP
>>> result.selected                      # low-cap coins whose RSI moves with BTC's
>>> result.rsi("ETH", "1h").tail()       # a coin's RSI, UTC open-time index
>>> faster = result.retune(rsi_period=21, correlation_threshold=0.6)  # no network, no agents
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from cryptorsi.config import AnalysisConfig
from cryptorsi.tables import correlation_table, failure_table

__all__ = ["AnalysisResult", "RETUNABLE"]

#: parameters ``retune`` may change (the others would need new data)
RETUNABLE = ("rsi_period", "rsi_method", "correlation_threshold", "low_cap_percentile", "min_overlap", "timeframes",
             "max_lag", "rolling_window", "min_stability")
#: parameters whose change needs the RSI and correlations computed again (the others only re-select)
_RECOMPUTE = ("rsi_period", "rsi_method", "min_overlap", "max_lag", "rolling_window", "correlation_threshold")


class AnalysisResult:
    """Results of session ``session_id``: ``correlations``, ``selected``, ``failures``, ``rsi()``, ``prices()``."""

    def __init__(self, *, session_id: str, config: AnalysisConfig, correlations: pd.DataFrame,
                 failures: pd.DataFrame, low_cap_threshold: float | None, synthetic: bool,
                 windows: dict[str, tuple[int, int]], universe: pd.DataFrame,
                 rsi_frames: dict[str, pd.DataFrame] | None = None, closes: dict[str, pd.DataFrame] | None = None):
        self.session_id = session_id
        self.config = config
        self.correlations = correlations
        self.failures = failures
        self.low_cap_threshold = low_cap_threshold
        self.synthetic = synthetic
        self.windows = windows
        self.universe = universe
        # Retuned results keep their RSI in memory (they are not saved); loaded ones read the database.
        self._rsi_frames = rsi_frames
        self._closes = closes if closes is not None else {}

    @classmethod
    def load(cls, db_path: str, session_id: str | None = None) -> "AnalysisResult":
        """The result of a stored session (the latest when ``session_id`` is None)."""
        from cryptorsi.storage.store import Store

        store = Store(db_path)
        session_id = session_id or store.latest_session_id()
        if session_id is None:
            raise KeyError(f"no session in {db_path}")
        sessions = store.sessions()
        row = sessions[sessions["session_id"] == session_id]
        if row.empty:
            raise KeyError(f"no session {session_id!r} in {db_path}")
        stored = dict(row.iloc[0]["config"])
        config = AnalysisConfig.from_dict(stored)
        windows = {tf: (int(w[0]), int(w[1])) for tf, w in stored.get("windows", {}).items()}
        universe = store.coins(session_id)
        correlations = store.correlations(session_id)
        from cryptorsi.analytics import low_cap_threshold

        return cls(session_id=session_id, config=config, correlations=correlations,
                   failures=store.failures(session_id),
                   low_cap_threshold=low_cap_threshold(universe["market_cap"].tolist(), config.low_cap_percentile),
                   synthetic=bool(stored.get("synthetic", False)), windows=windows, universe=universe)

    # ------------------------------------------------------------------ views
    @property
    def selected(self) -> pd.DataFrame:
        """Low-cap coins with ``|correlation| >= correlation_threshold``, by correlation, descending."""
        from cryptorsi.analytics import select

        return select(self.correlations, self.config.correlation_threshold, self.config.min_stability)

    def rsi(self, symbol: str, timeframe: str) -> pd.Series:
        """The coin's RSI on ``timeframe``, indexed by UTC candle open time."""
        coin_id = self._coin_id(symbol)
        if self._rsi_frames is not None:
            frame = self._rsi_frames.get(timeframe)
            if frame is None or coin_id not in frame:
                raise KeyError(f"{symbol.upper()} has no {timeframe} RSI in this result")
            return frame[coin_id].dropna().rename("rsi")
        return self._store().rsi(symbol, timeframe, session_id=self.session_id)

    def lag_profile(self, symbol: str, timeframe: str) -> pd.Series:
        """Correlation of the coin's RSI at t with BTC's at t - k candles, indexed by lag k (+k: the coin follows).

        >>> result.lag_profile("ETH", "1h").idxmax()   # doctest: +SKIP
        """
        from cryptorsi.leadlag import session_lag_profile

        return session_lag_profile(self.rsi(symbol, timeframe), self.rsi(self.config.benchmark, timeframe), timeframe,
                                   self.config)

    def rolling_correlation(self, symbol: str, timeframe: str) -> pd.Series:
        """Pearson of the coin's and BTC's RSI over a trailing window of common candles, indexed by time."""
        from cryptorsi.leadlag import session_rolling_correlation

        return session_rolling_correlation(self.rsi(symbol, timeframe), self.rsi(self.config.benchmark, timeframe),
                                           timeframe, self.config)

    def prices(self, symbol: str, timeframe: str) -> pd.DataFrame:
        """The coin's candles (open, high, low, close, volume) over the analysis window."""
        start, end = self.windows[timeframe]
        return self._store().prices(symbol, timeframe, start=pd.Timestamp(start, unit="ms", tz="UTC"),
                                    end=pd.Timestamp(end, unit="ms", tz="UTC"), session_id=self.session_id)

    def retune(self, **changes: Any) -> "AnalysisResult":
        """A new result for other RSI or selection parameters, from the cached candles (no network, no agents).

        Accepts ``rsi_period``, ``rsi_method``, ``correlation_threshold``, ``low_cap_percentile``,
        ``min_overlap`` and ``timeframes`` (a subset of those analysed). The new result is not saved.
        """
        unknown = sorted(set(changes) - set(RETUNABLE))
        if unknown:
            raise ValueError(f"{unknown[0]}: retune changes only {', '.join(RETUNABLE)}; run a new analysis "
                             "to change the data")
        config = self.config.replace(**changes)
        missing = [tf for tf in config.timeframes if tf not in self.windows]
        if missing:
            raise ValueError(f"timeframes: {missing[0]} was not analysed in session {self.session_id}")
        if all(getattr(config, name) == getattr(self.config, name) for name in _RECOMPUTE):
            keep = self.correlations["timeframe"].isin(config.timeframes)
            table, threshold = correlation_table(self.correlations[keep].drop(columns="low_cap").to_dict("records"),
                                                 self.universe["market_cap"].tolist(), config.low_cap_percentile,
                                                 config.timeframes)
            return self._derived(config, table, self.failures[self.failures["timeframe"].isin(config.timeframes)],
                                 threshold, self._rsi_frames)
        return self._recompute(config)

    # ------------------------------------------------------------------ internals
    def _recompute(self, config: AnalysisConfig) -> "AnalysisResult":
        from cryptorsi.analysis import analyze_timeframe
        from cryptorsi.indicators import no_rsi_reason, rsi

        coins = self.universe.set_index("coin_id")
        benchmark = coins.index[coins["symbol"] == config.benchmark][0]
        rows, failures, rsi_frames = [], [], {}
        fetch_failures = self.failures[(self.failures["stage"] == "fetch")
                                       & self.failures["timeframe"].isin(config.timeframes)]
        for timeframe in config.timeframes:
            closes = self._closes_for(timeframe)
            frame = rsi(closes, period=config.rsi_period, method=config.rsi_method)
            has_rsi = frame.notna().any()
            rsi_frames[timeframe] = frame = frame.loc[:, has_rsi]
            # why the benchmark has no RSI, if it has none: its fetch failed, or it has too few candles
            fetched = fetch_failures[(fetch_failures["timeframe"] == timeframe)
                                     & (fetch_failures["coin_id"] == benchmark)]
            cause = fetched["reason"].iloc[0] if len(fetched) else None
            for coin_id in has_rsi.index[~has_rsi]:
                reason = no_rsi_reason(config.rsi_period, closes[coin_id].count())
                cause = reason if coin_id == benchmark else cause
                failures.append({"coin_id": coin_id, "symbol": coins.loc[coin_id, "symbol"], "timeframe": timeframe,
                                 "stage": "rsi", "reason": reason})
            stats = analyze_timeframe(frame, closes, benchmark, timeframe, min_overlap=config.min_overlap,
                                      max_lag=config.max_lag, rolling_window=config.rolling_window,
                                      threshold=config.correlation_threshold, benchmark_symbol=config.benchmark,
                                      benchmark_cause=cause)
            for coin_id, stat in stats.iterrows():
                base = {"coin_id": coin_id, "symbol": coins.loc[coin_id, "symbol"], "timeframe": timeframe}
                if isinstance(stat["reason"], str):
                    failures.append(base | {"stage": "correlation", "reason": stat["reason"]})
                else:
                    rows.append(base | stat.drop("reason").to_dict() | {"market_cap": coins.loc[coin_id, "market_cap"]})
        table, threshold = correlation_table(rows, coins["market_cap"].tolist(), config.low_cap_percentile,
                                             config.timeframes)
        all_failures = failure_table(fetch_failures.to_dict("records") + failures)
        return self._derived(config, table, all_failures, threshold, rsi_frames)

    def _closes_for(self, timeframe: str) -> pd.DataFrame:
        """Close prices of every coin with candles on ``timeframe``, one column per coin_id (loaded once)."""
        if timeframe not in self._closes:
            from cryptorsi.storage.store import Store

            store = Store(self.config.db_path)
            start, end = self.windows[timeframe]
            fetch_failed = set(self.failures.loc[(self.failures["stage"] == "fetch")
                                                 & (self.failures["timeframe"] == timeframe), "coin_id"])
            columns = {}
            for coin in self.universe.itertuples():
                if coin.coin_id in fetch_failed:
                    continue
                candles = store.candles(coin.exchange, coin.pair, timeframe, start, end)
                if len(candles):
                    columns[coin.coin_id] = candles["close"]
            self._closes[timeframe] = pd.DataFrame(columns)
        return self._closes[timeframe]

    def _derived(self, config, correlations, failures, threshold, rsi_frames) -> "AnalysisResult":
        return AnalysisResult(session_id=self.session_id, config=config, correlations=correlations,
                              failures=failures.reset_index(drop=True), low_cap_threshold=threshold,
                              synthetic=self.synthetic, windows=self.windows, universe=self.universe,
                              rsi_frames=rsi_frames, closes=self._closes)

    def _coin_id(self, symbol: str) -> str:
        match = self.universe.loc[self.universe["symbol"].str.upper() == symbol.upper(), "coin_id"]
        if match.empty:
            raise KeyError(f"{symbol.upper()} is not in session {self.session_id}")
        return match.iloc[0]

    def _store(self):
        from cryptorsi.storage.store import Store

        return Store(self.config.db_path)

    def __repr__(self) -> str:
        label = " [synthetic sample data]" if self.synthetic else ""
        return (f"<AnalysisResult session={self.session_id}{label}: {len(self.correlations)} correlations, "
                f"{len(self.selected)} selected, {len(self.failures)} failures>")
