"""``DataFetcher``: all I/O with the market — the coin universe and the candles of each coin.

It serves two requests from its worker threads (several for the live source, whose requests wait
on the network):

* ``FetchTopCoinsRequested`` → ``TopCoinsFetched`` (top coins × exchange markets, filtered by
  :func:`~cryptorsi.sources.universe.select_universe`), or ``RunFailed`` when there is no universe;
* ``FetchHistoricalPricesRequested`` → ``HistoricalPricesFetched``, or ``CoinProcessingFailed``.

Candles already in the database are read from it (each worker thread has its own read-only
connection) and only what is missing is asked of the source: the window minus the cached candles'
span and minus the spans recorded complete (``candle_coverage``: what earlier fetches asked for and
got, including spans without any candle, before a late listing or after a delisting). The spans a
fetch completes travel with the new candles (``uncached.attrs[COVERAGE_ATTR]``) and are recorded by
the DatabaseManager in the transaction that saves them, so a second run asks nothing it already has.
(A network bus does not carry ``attrs``: there, only the cached span is trusted.)

For sources that make HTTP requests (live), it publishes :class:`~cryptorsi.events.FetchProgress`
per timeframe (requests done / planned) and reports request statistics (:meth:`DataFetcher.request_stats`).

Each request names its source (a :class:`~cryptorsi.events.SourceSpec`), so a fetcher serves every
analysis on its bus, in this process or in a ``cryptorsi worker`` elsewhere; sources are made once per
spec and kept until the fetcher stops.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

import pandas as pd

from cryptorsi.errors import CryptoRSIError, DatabaseError, SourceError, SourceUnavailable
from cryptorsi.events import (
    CoinProcessingFailed,
    FetchHistoricalPricesRequested,
    FetchProgress,
    FetchTopCoinsRequested,
    HistoricalPricesFetched,
    RunFailed,
    SourceSpec,
    TopCoinsFetched,
)
from cryptorsi.market import Market, empty_candles, open_times_ms, timeframe_ms
from cryptorsi.runtime.worker import QueueWorkerThread
from cryptorsi.sources import source_from_spec
from cryptorsi.sources.base import MarketSource
from cryptorsi.storage.database import COVERAGE_ATTR
from cryptorsi.windows import missing_spans

__all__ = ["DataFetcher"]

log = logging.getLogger(__name__)

#: candles per klines request (Binance's maximum), to estimate the requests a span needs
PAGE = 1000


def pages_for(spans, timeframe: str) -> int:
    """Requests needed to page through ``spans`` (``[(start_ms, end_ms), ...]``), 1000 candles a request."""
    step = timeframe_ms(timeframe)
    return sum(max(1, math.ceil(math.ceil((e - s) / step) / PAGE)) for s, e in spans if e > s)


@dataclass
class _Tally:
    """Request progress of one (session, timeframe)."""

    done: int = 0
    planned: int = 0
    coins_done: int = 0
    coins_total: int = 0
    published: float = 0.0


class DataFetcher(QueueWorkerThread):
    """Serves fetch requests; ``db_path`` (optional) is the candle cache to read first.

    ``sources`` pre-seeds the sources by spec (the Runner passes the one it already made);
    ``coingecko_api_key`` is this process' key for live sources.
    """

    def __init__(self, bus, db_path: str | None = None, *, threads: int = 1,
                 sources: dict[SourceSpec, MarketSource] | None = None, coingecko_api_key: str | None = None,
                 progress_interval_s: float = 0.2):
        super().__init__(bus, name="DataFetcher", threads=threads)
        self.db_path = db_path
        self.coingecko_api_key = coingecko_api_key
        self.progress_interval_s = float(progress_interval_s)
        self._sources: dict[SourceSpec, MarketSource] = dict(sources or {})
        self._sources_lock = threading.Lock()
        self._local = threading.local()  # one read-only CandleCache connection per worker thread
        self._tallies: dict[tuple[str, str], _Tally] = {}
        self._tally_lock = threading.Lock()
        self._failed_runs: set[str] = set()  # sessions this fetcher has failed (one RunFailed each)
        # One cache read at a time: reading rows is GIL-bound, and sqlite3 releases the GIL at every row, so
        # several threads reading at once mostly trade the GIL back and forth (2-3x slower in all)
        self._read_lock = threading.Lock()

    def subscribe(self) -> None:
        self.serve(FetchTopCoinsRequested, self._fetch_universe, self._universe_failed)
        self.serve(FetchHistoricalPricesRequested, self._fetch_prices, self._prices_failed)

    def source(self, spec: SourceSpec) -> MarketSource:
        """The source for ``spec``, made on first use."""
        with self._sources_lock:
            source = self._sources.get(spec)
            if source is None:
                source = self._sources[spec] = source_from_spec(spec, coingecko_api_key=self.coingecko_api_key)
            return source

    def stats(self) -> dict:
        """Request statistics of the sources that keep them (live), by source name: requests, weight, retries..."""
        with self._sources_lock:
            sources = list(self._sources.values())
        out = {}
        for source in sources:
            stats = getattr(source, "stats", None)
            if callable(stats):
                out[source.name] = stats()
        return out

    def request_stats(self, session_id: str | None = None) -> dict | None:
        """What a progress display shows of the exchange requests (JSON-ready), or None when no source of this
        fetcher makes requests (sample, cache):

        ``requests`` (Binance requests sent, retries included), ``klines_requests``, ``weight`` (request weight
        sent) and ``weight_in_window`` of ``weight_limit`` per ``weight_window_s`` seconds (the budget in force,
        learnt from the exchange), ``retries``, ``rate_limited`` (429 answers), ``banned`` (418 answers),
        ``errors`` (requests given up), ``paused_s`` (time every thread waited on a Retry-After),
        ``coingecko_requests``, ``coingecko_rate_limited``, and ``timeframes``: ``{timeframe: {"done",
        "planned", "coins_done", "coins_total"}}`` for ``session_id`` (every session when None).
        """
        keys = ("requests", "klines_requests", "weight", "weight_in_window", "weight_limit", "weight_window_s",
                "retries", "rate_limited", "banned", "errors", "paused_s", "coingecko_requests",
                "coingecko_rate_limited")
        found = list(self.stats().values())
        if not found:
            return None
        out: dict = {}
        for key in keys:
            values = [s.get(key) for s in found if s.get(key) is not None]
            if key in ("weight_limit", "weight_window_s"):
                out[key] = values[0] if values else None
            else:
                out[key] = sum(values) if values else 0
        with self._tally_lock:
            tallies = {k: _Tally(**vars(t)) for k, t in self._tallies.items()}
        timeframes: dict[str, dict] = {}
        for (sid, tf), t in tallies.items():
            if session_id is not None and sid != session_id:
                continue
            agg = timeframes.setdefault(tf, {"done": 0, "planned": 0, "coins_done": 0, "coins_total": 0})
            agg["done"] += t.done
            agg["planned"] += max(t.planned, t.done)
            agg["coins_done"] += t.coins_done
            agg["coins_total"] += t.coins_total
        out["timeframes"] = timeframes
        return out

    def on_stop(self) -> None:  # runs in each worker thread: closes that thread's own connections
        for cache in self._local.__dict__.pop("caches", {}).values():
            cache.close()

    def stop(self, timeout: float = 5.0) -> bool:
        # Interrupts the sources' back-off waits first, so a stop never waits out a Retry-After.
        with self._sources_lock:
            sources = list(self._sources.values())
        for source in sources:
            source.close()
        return super().stop(timeout)

    def submit(self, fn, *args, **kwargs):
        # Runs on the bus thread for every request served: counts the coins of each timeframe and plans their
        # requests (the whole window until the cache says otherwise), so a progress bar knows its total early.
        event = args[0] if args else None
        if isinstance(event, FetchHistoricalPricesRequested) and event.source.name == "live" and not self.stopping:
            with self._tally_lock:
                tally = self._tallies.setdefault((event.session_id, event.timeframe), _Tally())
                tally.coins_total += 1
                tally.planned += pages_for([(event.start_ms, event.end_ms)], event.timeframe)
        return super().submit(fn, *args, **kwargs)

    # ------------------------------------------------------------------ tasks (worker threads)
    def _fetch_universe(self, event: FetchTopCoinsRequested) -> None:
        from cryptorsi.sources.universe import select_universe

        try:
            source = self.source(event.source)
            coins = source.top_coins(event.top_n)
            markets = source.markets()
        except CryptoRSIError as exc:  # an expected failure (unreachable host...): one line, not a task error
            self._universe_failed(event, exc)
            return
        listings, excluded = select_universe(
            coins, markets, exchange=source.exchange, quotes=event.quotes,
            benchmark=event.benchmark, include_stablecoins=event.include_stablecoins,
        )
        if not any(listing.symbol == event.benchmark for listing in listings):
            why = next((x.reason for x in excluded if x.coin.symbol == event.benchmark), "not in the top coins")
            self.publish(RunFailed(event.session_id, f"benchmark {event.benchmark} cannot be analysed: {why}"))
            return
        self.publish(TopCoinsFetched(event.session_id, tuple(listings), tuple(excluded)))

    def _fetch_prices(self, event: FetchHistoricalPricesRequested) -> None:
        if self.stopping:
            return
        tracked = event.source.name == "live"
        try:
            self._fetch_window(event, self.source(event.source), tracked)
        except SourceUnavailable as exc:  # nothing more can be fetched (a host refusing this location...)
            self._run_failed_once(event.session_id, str(exc))
        except (SourceError, DatabaseError) as exc:  # this coin failed, with a reason: not a task error
            self._prices_failed(event, exc)
        finally:
            if tracked:
                self._coin_done(event)

    def _fetch_window(self, event: FetchHistoricalPricesRequested, source: MarketSource, tracked: bool) -> None:
        listing, timeframe = event.listing, event.timeframe
        db_path = event.source.db_path if source.name == "cache" else self.db_path
        cached, covered = self._cached(db_path, listing.exchange, listing.pair, timeframe, event.start_ms,
                                       event.end_ms)
        fresh, completed = [], []
        if source.name != "cache":
            market = Market(listing.pair, listing.symbol, listing.quote)
            spans = missing_spans(open_times_ms(cached), event.start_ms, event.end_ms, timeframe, covered)
            if tracked:
                fresh = self._fetch_tracked(event, source, market, spans, completed)
                if fresh is None:
                    return
            else:
                for start, end in spans:
                    if self.stopping:
                        return
                    closed = source.closed_until(timeframe)
                    fresh.append(source.candles(market, timeframe, start, end))
                    if min(end, closed) > start:
                        completed.append((start, min(end, closed)))
        uncached = _concat(fresh) if fresh else cached.iloc[:0]
        candles = _concat([cached, uncached]) if len(uncached) else cached
        if len(candles) == 0:
            raise SourceError(f"no {timeframe} candles for {listing.pair} in the window")
        if completed:
            if not len(uncached):
                # nothing new, but spans now known empty (before a listing, after a delisting): the coverage
                # rides on one cached row saved again unchanged, since empty frames are not saved
                uncached = cached.iloc[-1:].copy()
            else:
                uncached = uncached.copy(deep=False)
            uncached.attrs = {COVERAGE_ATTR: completed}
        self.publish(HistoricalPricesFetched(event.session_id, listing, timeframe, candles, uncached))

    def _fetch_tracked(self, event, source, market, spans, completed) -> list | None:
        """Fetch ``spans`` counting each request for the progress of the event's timeframe; None when stopped."""
        timeframe = event.timeframe
        planned = pages_for(spans, timeframe)
        self._replan(event, planned - pages_for([(event.start_ms, event.end_ms)], timeframe))
        made = [0]

        def on_request() -> None:
            made[0] += 1
            self._request_done(event)

        fresh = []
        try:
            for start, end in spans:
                if self.stopping:
                    return None
                closed = source.closed_until(timeframe)  # before the request: what it returns up to there is final
                fresh.append(source.candles(market, timeframe, start, end, on_request=on_request))
                if min(end, closed) > start:
                    completed.append((start, min(end, closed)))
        finally:
            # the coin's estimate becomes what it took (retries add requests, a late listing needs fewer)
            self._replan(event, made[0] - planned)
        return fresh

    # ------------------------------------------------------------------ progress (worker threads)
    def _replan(self, event, delta: int) -> None:
        if delta:
            with self._tally_lock:
                tally = self._tallies.get((event.session_id, event.timeframe))
                if tally is not None:
                    tally.planned = max(0, tally.planned + delta)
            self._maybe_publish(event)

    def _request_done(self, event) -> None:
        with self._tally_lock:
            tally = self._tallies.get((event.session_id, event.timeframe))
            if tally is not None:
                tally.done += 1
        self._maybe_publish(event)

    def _coin_done(self, event) -> None:
        with self._tally_lock:
            tally = self._tallies.get((event.session_id, event.timeframe))
            if tally is None:
                return
            tally.coins_done += 1
            final = tally.coins_done >= tally.coins_total
            if final:
                tally.planned = tally.done  # every request made: nothing more is planned
        self._maybe_publish(event, force=final)

    def _maybe_publish(self, event, force: bool = False) -> None:
        key = (event.session_id, event.timeframe)
        now = time.monotonic()
        with self._tally_lock:
            tally = self._tallies.get(key)
            if tally is None or (not force and now - tally.published < self.progress_interval_s):
                return
            tally.published = now
            progress = FetchProgress(event.session_id, event.timeframe, tally.done, max(tally.planned, tally.done),
                                     tally.coins_done, tally.coins_total)
        self.publish(progress)

    # ------------------------------------------------------------------ helpers
    def _cached(self, db_path, exchange: str, pair: str, timeframe: str, start_ms: int,
                end_ms: int) -> tuple[pd.DataFrame, list[tuple[int, int]]]:
        """The cached candles of the window and the spans recorded complete that meet it."""
        if db_path is None:
            return empty_candles(), []
        caches = self._local.__dict__.setdefault("caches", {})
        cache = caches.get(db_path)
        if cache is None:
            from cryptorsi.storage.database import CandleCache

            cache = caches[db_path] = CandleCache(db_path)
        with self._read_lock:
            return cache.load_window(exchange, pair, timeframe, start_ms, end_ms)

    def _universe_failed(self, event: FetchTopCoinsRequested, exc: BaseException) -> None:
        what = "" if isinstance(exc, CryptoRSIError) else f"{type(exc).__name__}: "
        self._run_failed_once(event.session_id, f"cannot fetch the coin list: {what}{exc}")

    def _run_failed_once(self, session_id: str, reason: str) -> None:
        """Fail the run (the first reason only: every coin after the first meets the same cause)."""
        with self._tally_lock:
            if session_id in self._failed_runs:
                return
            self._failed_runs.add(session_id)
        self.publish(RunFailed(session_id, reason))

    def _prices_failed(self, event: FetchHistoricalPricesRequested, exc: BaseException) -> None:
        expected = isinstance(exc, (SourceError, DatabaseError))
        reason = str(exc) if expected else f"{type(exc).__name__}: {exc}"
        self.publish(CoinProcessingFailed(event.session_id, event.listing, event.timeframe, "fetch", reason))


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_candles()
    if len(frames) == 1:
        return frames[0]
    out = pd.concat(frames).sort_index()
    return out[~out.index.duplicated(keep="last")]
