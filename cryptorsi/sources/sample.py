"""``SampleSource``: a deterministic synthetic crypto market, so the whole product runs offline.

**The data is synthetic.** Prices, market caps, names and pairs are made up (only ``bitcoin``/BTC and
``ethereum``/ETH borrow real names); nothing here describes a real market.

What the sample market holds
----------------------------
* 260 coins ranked by market cap (BTC ~1.8e12 down to ~5e6, five and a half orders of magnitude),
  ids ``"sample-<words>"`` and distinct made-up tickers, plus BTC and ETH.
* Hourly candles from ``SAMPLE_START`` (2023-11-13T00:00Z, a Monday) to ``SAMPLE_END``
  (2026-01-01T00:00Z), 780 days = 111 weeks and 3 days, whatever today's date is. Coarser timeframes
  (2h ... 1w) are exact aggregations of the hourly candles into UTC-aligned buckets, like Binance
  (``1w`` buckets open on Mondays 00:00 UTC; every other timeframe on multiples of its length since the
  epoch). Only closed candles are returned: the week that contains ``SAMPLE_END`` is left out.
  Timeframes below 1h raise :class:`~cryptorsi.errors.SourceError` (a year of minutes for 260 coins is
  not worth its memory here).
* Correlation with BTC **by construction**. With ``z_btc`` BTC's standardised hourly shocks, ``s_t`` a
  market-wide volatility regime and ``z_i`` the coin's own shocks, a coin's hourly log return is::

      r_i(t) = drift_i + s_t * vol_i * (rho_i * z_btc(t - lag_i) + sqrt(1 - rho_i**2) * z_i(t))

  i.e. ``beta_i * r_btc`` mixed with idiosyncratic noise (``beta_i = rho_i * vol_i / vol_btc``). The mixing
  weight ``rho_i`` runs over [0, 0.99] along the ranks with a low-discrepancy (golden-ratio) sequence, so
  every cap bucket has weakly and strongly correlated coins. The realised RSI(14) correlation with BTC
  on 1h candles over the last 50 weeks spans -0.05 to 0.99 (see ``docs/sample-market.md``).
  Some coins react ``lag_i`` = 2..8 hours late, and some illiquid ones carry mean-reverting price noise
  (``noise_i``): both lower the 1h correlation much more than the 1d one, so the timeframe matters.
* Quirks of a real market: late listings (no candle before the listing hour), interior gaps (absent
  rows, never NaN rows), stablecoins (``Sample USD``/SUSD ..., ``Flat USD``/FUSD is perfectly flat at
  1.0), wrapped and staked twins (``Wrapped Bitcoin``/WBTC tracks BTC to ~0.01 %), coins with no pair,
  USDT-only coins, inactive (``BREAK``) pairs and one ticker shared by two coins. The universe rules
  (:func:`cryptorsi.sources.universe.select_universe`) exclude them like the real ones.

Determinism: every random number comes from a numpy ``PCG64`` generator seeded with
``SeedSequence([MASTER_SEED, stream, coin_index])``; each coin's full history is generated at once and
sliced, so a window always gets the same candles whatever else was asked before. Prices are rounded to a
per-coin tick (8 significant digits at the start price). The candles are bit-identical across processes
for a given numpy version and platform.

Example::

    >>> from cryptorsi.sources.sample import SampleSource, SAMPLE_END_MS
    >>> src = SampleSource()
    >>> [c.symbol for c in src.top_coins(3)]
    ['BTC', 'ETH', 'SUSD']
    >>> from cryptorsi.market import Market
    >>> day = 86_400_000
    >>> frame = src.candles(Market("BTC/USDC", "BTC", "USDC"), "1d", SAMPLE_END_MS - 7 * day, SAMPLE_END_MS)
    >>> len(frame), list(frame.columns)
    (7, ['open', 'high', 'low', 'close', 'volume'])
    >>> src.profiles().loc["bitcoin", "kind"]
    'benchmark'
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from cryptorsi.errors import SourceError
from cryptorsi.market import Coin, Market, TIMEFRAMES, candles_from_arrays, empty_candles
from cryptorsi.sources.base import MarketSource

__all__ = [
    "SampleSource",
    "SAMPLE_START",
    "SAMPLE_END",
    "SAMPLE_START_MS",
    "SAMPLE_END_MS",
    "SAMPLE_TIMEFRAMES",
    "MASTER_SEED",
]

SAMPLE_START = pd.Timestamp("2023-11-13T00:00:00Z")  # a Monday, and a multiple of 3 days since the epoch
SAMPLE_END = pd.Timestamp("2026-01-01T00:00:00Z")  # exclusive: the last hourly candle opens at 23:00 on Dec 31
SAMPLE_START_MS = int(SAMPLE_START.value // 1_000_000)
SAMPLE_END_MS = int(SAMPLE_END.value // 1_000_000)
MASTER_SEED = 20_260_101

_HOUR = 3_600_000
_DAY = 86_400_000
_N_HOURS = (SAMPLE_END_MS - SAMPLE_START_MS) // _HOUR  # 18_720
#: the timeframes the sample market serves (every Binance timeframe of 1h or more)
SAMPLE_TIMEFRAMES = tuple(tf for tf, ms in TIMEFRAMES.items() if ms >= _HOUR)
# Binance's weekly candles open on Mondays 00:00 UTC; the epoch (1970-01-01) was a Thursday.
_WEEK_OFFSET = 4 * _DAY

# Random streams (the second word of every SeedSequence).
_STREAM_COMMON, _STREAM_ROSTER, _STREAM_PATH = 0, 1, 2

_N_COINS = 260
_BTC_VOL = 0.0055  # hourly: ~51 % a year
_BTC_START, _BTC_END = 37_000.0, 87_500.0
_RHO_MAX = 0.99
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


@dataclass(frozen=True)
class _Profile:
    """How one coin is generated (see the module docstring)."""

    coin: Coin
    kind: str  # benchmark | regular | stable | flat | twin
    rho: float
    vol: float
    drift: float  # hourly log drift
    lag: int  # hours
    noise: float  # amplitude of the mean-reverting log-price noise, in units of vol
    start_price: float
    listed: int  # first hour index with a candle
    gaps: tuple[tuple[int, int], ...]  # (first hour, length) of each missing run
    twin_of: int | None  # index of the coin a twin tracks
    turnover: float  # daily quote volume / market cap


class _Hourly:
    """The hourly candles of one coin over the whole span (read-only arrays)."""

    __slots__ = ("time", "open", "high", "low", "close", "volume")

    def __init__(self, time, open_, high, low, close, volume):
        for name, arr in zip(self.__slots__, (time, open_, high, low, close, volume)):
            arr = np.ascontiguousarray(arr)
            arr.flags.writeable = False
            setattr(self, name, arr)

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in self.__slots__)


# ---------------------------------------------------------------------------------------------- roster
_PREFIXES = (
    "Aether", "Amber", "Apex", "Arcadia", "Astra", "Aurora", "Basalt", "Beacon", "Bolt", "Borealis",
    "Cadence", "Canopy", "Cinder", "Cobalt", "Comet", "Coral", "Crest", "Delta", "Drift", "Echo",
    "Ember", "Falcon", "Fathom", "Flux", "Forge", "Fractal", "Galena", "Glacier", "Granite", "Halo",
    "Harbor", "Helix", "Horizon", "Indigo", "Ion", "Jade", "Juniper", "Kestrel", "Kinetic", "Lattice",
    "Lumen", "Lunar", "Magma", "Meridian", "Mosaic", "Nebula", "Nimbus", "Nova", "Oasis", "Obsidian",
    "Onyx", "Orbit", "Paragon", "Photon", "Pixel", "Prism", "Pulse", "Quanta", "Quartz", "Radiant",
    "Raven", "Sable", "Sierra", "Solace", "Spark", "Summit", "Tangent", "Tempest", "Titan", "Tundra",
    "Umbra", "Vapor", "Vector", "Velvet", "Vertex", "Vortex", "Xenon", "Yonder", "Zenith", "Zephyr",
    "Argent", "Boreal", "Cipher", "Dune",
)
_SUFFIXES = ("Network", "Protocol", "Chain", "Finance", "Swap", "AI", "Labs", "Games", "DAO", "Verse")
# Tickers the generated names must not take (real majors, quotes, and the stablecoin/wrapped lists).
_RESERVED = {"BTC", "ETH", "USDC", "USDT", "DAI", "FRAX", "GHO", "PAXG", "XAUT", "EURC", "EURS", "SOL", "BNB",
             "ORB", "NEAR", "APE", "ONE", "ICP", "FLUX", "ASTR", "ECHO", "MAGMA", "PIXEL", "PRISM"}

# Special coins by rank (1-based): (kind, coin_id, symbol, name, extra).
_SPECIAL = {
    1: ("benchmark", "bitcoin", "BTC", "Bitcoin", None),
    2: ("regular", "ethereum", "ETH", "Ethereum", None),
    3: ("stable", "sample-usd", "SUSD", "Sample USD", 2e-4),
    7: ("twin", "sample-wrapped-bitcoin", "WBTC", "Wrapped Bitcoin", 1),
    12: ("twin", "sample-staked-ether", "STETH", "Staked Ether", 2),
    16: ("flat", "sample-flat-usd", "FUSD", "Flat USD", 0.0),
    26: ("twin", "sample-wrapped-ether", "WETH", "Wrapped Ether", 2),
    44: ("stable", "sample-dollar-stablecoin", "SDOL", "Sample Dollar Stablecoin", 5e-5),
    95: ("twin", None, None, None, 20),  # "Wrapped <coin ranked 20>", W<its ticker>
    130: ("stable", "sample-pay-usd", "PUSD", "Sample Pay USD", 1e-4),
}
_NO_PAIR = (11, 58, 133, 187, 243)  # like coins that are not on Binance
_USDT_ONLY = (47, 152)
_USDC_BREAK = (96, 206)  # the USDC pair is inactive; rank 96 still trades against USDT
_NO_USDT = (14, 23, 31, 38, 52, 63, 77, 84, 101, 117, 125, 139, 144, 161, 176, 183, 199, 206, 214, 222, 231, 249, 257)
_TWIN_BASES = {spec[4] for spec in _SPECIAL.values() if spec[0] == "twin"}  # kept complete: no gap, no late listing
_COLLISION = (171, 69)  # the coin ranked 171 shares the ticker of the coin ranked 69
_VERY_LATE = 150  # listed 20 days before SAMPLE_END (too little history for 1d)


def _rng(stream: int, index: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([MASTER_SEED, stream, index])))


def _slug(text: str) -> str:
    return "-".join(text.lower().split())


def _market_caps(rng: np.random.Generator) -> np.ndarray:
    """Caps by rank: BTC, ETH, then a Zipf-like curve down to ~5e6 with a little jitter, strictly decreasing."""
    ranks = np.arange(3, _N_COINS + 1, dtype=np.float64)
    top, bottom = 2.6e11, 5.0e6
    slope = math.log(top / bottom) / math.log(_N_COINS / 3)
    curve = top * (ranks / 3) ** -slope * np.exp(rng.normal(0.0, 0.04, ranks.size))
    caps = np.concatenate([[1.8e12, 4.2e11], np.sort(curve)[::-1]])
    return np.round(caps, -3)


def _names(count: int) -> list[tuple[str, str, str]]:
    """(coin_id, symbol, name) of the regular made-up coins, deterministic and distinct."""
    out, used = [], set(_RESERVED)
    for k in range(count):
        prefix = _PREFIXES[k % len(_PREFIXES)]
        suffix = _SUFFIXES[(k // len(_PREFIXES) * 3 + k * 7) % len(_SUFFIXES)]
        name = f"{prefix} {suffix}"
        p, s = prefix.upper(), suffix.upper()
        candidates = [p[:4], p[:3] + s[0], p[:2] + s[:2], p[:3] + s[:2], p[0] + p[2] + s[:2], p[:4] + s[0]]
        candidates += [p[:3] + str(i) for i in range(2, 10)]
        symbol = next(c for c in candidates if c not in used and len(c) >= 3)
        used.add(symbol)
        out.append((f"sample-{_slug(name)}", symbol, name))
    return out


def _build_roster() -> tuple[list[_Profile], list[Market]]:
    rng = _rng(_STREAM_ROSTER, 0)
    caps = _market_caps(rng)
    names = iter(_names(_N_COINS - len(_SPECIAL)))
    # Parameters drawn once for every rank (unused for some kinds), so adding a kind never shifts the rest.
    u_lag, u_noise, u_late, u_gap = (rng.random(_N_COINS + 1) for _ in range(4))
    lags = rng.integers(2, 9, _N_COINS + 1)
    late_days = rng.integers(60, 450, _N_COINS + 1)
    drifts = rng.normal(-0.1, 0.5, _N_COINS + 1) / 8760.0
    start_prices = 10 ** rng.uniform(-4.0, 2.5, _N_COINS + 1)
    vol_jitter = rng.uniform(0.75, 1.3, _N_COINS + 1)
    noise_amp = rng.uniform(1.0, 3.0, _N_COINS + 1)
    turnover = rng.uniform(0.01, 0.12, _N_COINS + 1)
    gap_rngs = [_rng(_STREAM_ROSTER, 1000 + r) for r in range(_N_COINS + 1)]

    profiles: list[_Profile] = []
    for rank in range(1, _N_COINS + 1):
        cap = float(caps[rank - 1])
        depth = math.log10(caps[0] / cap) / math.log10(caps[0] / caps[-1])  # 0 for BTC .. 1 for the smallest
        kind, coin_id, symbol, name, extra = _SPECIAL.get(rank, ("regular", None, None, None, None))
        twin_of = None
        if kind == "twin":
            twin_of = extra - 1
            if coin_id is None:
                base = profiles[twin_of].coin
                coin_id, symbol, name = f"sample-wrapped-{base.coin_id.removeprefix('sample-')}", "W" + base.symbol, \
                    f"Wrapped {base.name}"
        elif coin_id is None:
            coin_id, symbol, name = next(names)
        if rank == _COLLISION[0]:
            symbol = profiles[_COLLISION[1] - 1].coin.symbol
        coin = Coin(coin_id, symbol, name, cap, rank)

        special = rank in _SPECIAL
        u = (0.5 + rank * _GOLDEN) % 1.0
        rho = {"benchmark": 1.0, "stable": 0.0, "flat": 0.0, "twin": 1.0}.get(kind, _RHO_MAX * u)
        if coin_id == "ethereum":
            rho = 0.9
        vol = _BTC_VOL if kind == "benchmark" else (0.0075 + 0.0095 * depth) * vol_jitter[rank]
        if coin_id == "ethereum":
            vol = 0.0075
        elif kind in ("stable", "flat"):
            vol = float(extra)  # the peg's noise (0 for the flat one)
        elif kind == "twin":
            vol = profiles[twin_of].vol
        # Lagged followers are small: outside the top 40.
        lag = int(lags[rank]) if kind == "regular" and not special and rank > 40 and u_lag[rank] < 0.1 else 0
        noise = float(noise_amp[rank]) if (kind == "regular" and not special and lag == 0
                                           and u_noise[rank] < 0.25 * depth) else 0.0
        listed = 0
        protected = special or rank in _TWIN_BASES or rank in _NO_PAIR
        if rank == _VERY_LATE:
            listed = _N_HOURS - 20 * 24
        elif kind == "regular" and not protected and u_late[rank] < 0.09:
            listed = int(late_days[rank]) * 24 + int(lags[rank]) * 3
        gaps: tuple[tuple[int, int], ...] = ()
        if kind == "regular" and not protected and u_gap[rank] < 0.14:
            g = gap_rngs[rank]
            n = int(g.integers(1, 5))
            firsts = np.sort(g.integers(listed + 48, _N_HOURS - 48, n))
            gaps = tuple((int(f), int(g.integers(1, 7))) for f in firsts)
        start_price = {"benchmark": _BTC_START, "stable": 1.0, "flat": 1.0}.get(kind, float(start_prices[rank]))
        if coin_id == "ethereum":
            start_price = 2_050.0
        profiles.append(_Profile(
            coin=coin, kind=kind, rho=float(rho), vol=float(vol),
            drift=float(drifts[rank]) if kind == "regular" else 0.0,
            lag=lag, noise=noise, start_price=start_price, listed=listed, gaps=gaps, twin_of=twin_of,
            turnover=float(turnover[rank]),
        ))

    markets: list[Market] = []
    seen: set[str] = set()
    for p in profiles:
        rank, sym = p.coin.market_cap_rank, p.coin.symbol
        if rank in _NO_PAIR or sym in seen:
            continue
        seen.add(sym)
        if rank not in _USDT_ONLY:
            markets.append(Market(f"{sym}/USDC", sym, "USDC", active=rank not in _USDC_BREAK))
        if rank not in _NO_USDT:
            markets.append(Market(f"{sym}/USDT", sym, "USDT", active=True))
    return profiles, markets


# ---------------------------------------------------------------------------------------------- paths
def _common_factors() -> tuple[np.ndarray, np.ndarray]:
    """BTC's standardised hourly shocks and the market-wide volatility regime (one value per hour)."""
    rng = _rng(_STREAM_COMMON, 0)
    z_btc = rng.standard_normal(_N_HOURS)
    n_days = _N_HOURS // 24 + 1
    # Daily AR(1) log-volatility (persistence 0.93, unit variance), interpolated to hours.
    x = lfilter([math.sqrt(1 - 0.93**2)], [1.0, -0.93], rng.standard_normal(n_days))
    x = np.interp(np.arange(_N_HOURS) / 24.0, np.arange(n_days), x)
    regime = np.exp(0.35 * x - 0.35**2)
    return z_btc, regime


class _Generator:
    """Generates the full hourly history of one coin from its profile and the common factors."""

    def __init__(self, profiles: list[_Profile]):
        self.profiles = profiles
        self.z_btc, self.regime = _common_factors()
        self.hours = SAMPLE_START_MS + np.arange(_N_HOURS, dtype=np.int64) * _HOUR

    def log_close(self, index: int) -> tuple[np.ndarray, np.ndarray, float]:
        """Log close of every hour of the span, the per-hour volatility, and the log open of hour 0."""
        p = self.profiles[index]
        rng = _rng(_STREAM_PATH, index)
        if p.kind == "flat":
            return np.zeros(_N_HOURS), np.zeros(_N_HOURS), 0.0
        if p.kind == "stable":
            # A peg: mean-reverting log-price noise around 0 (price 1.0), no trend.
            eps = rng.standard_normal(_N_HOURS + 1)
            path = lfilter([math.sqrt(1 - 0.8**2)], [1.0, -0.8], eps) * p.vol
            return path[1:], np.full(_N_HOURS, p.vol), float(path[0])
        if p.kind == "twin":
            base, sigma, log_open = self.log_close(p.twin_of)
            return base + rng.normal(0.0, 1e-4, _N_HOURS), sigma, log_open
        sigma = p.vol * self.regime
        if p.kind == "benchmark":
            r = sigma * self.z_btc
            r += (math.log(_BTC_END / _BTC_START) - r.sum()) / _N_HOURS  # end at _BTC_END (a Brownian bridge)
        else:
            own = rng.standard_normal(_N_HOURS)
            follow = np.empty(_N_HOURS)
            follow[p.lag:] = self.z_btc[: _N_HOURS - p.lag]
            follow[: p.lag] = rng.standard_normal(p.lag)  # before BTC's first shock: the coin's own news
            r = p.drift + sigma * (p.rho * follow + math.sqrt(1.0 - p.rho**2) * own)
        log_close = math.log(p.start_price) + np.cumsum(r)
        if p.noise > 0:
            transient = lfilter([math.sqrt(1 - 0.6**2)], [1.0, -0.6], rng.standard_normal(_N_HOURS)) * p.noise * p.vol
            log_close += transient
        return log_close, sigma, math.log(p.start_price)

    def hourly(self, index: int) -> _Hourly:
        p = self.profiles[index]
        log_c, sigma, log_o0 = self.log_close(index)
        rng = _rng(_STREAM_PATH, 100_000 + index)  # candles' shape: wicks and volume
        close = np.exp(log_c)
        open_ = np.empty(_N_HOURS)
        open_[0] = math.exp(log_o0)
        open_[1:] = close[:-1]
        # Wicks and trading activity: exponential draws (cheap, positive, right-skewed).
        wick_up, wick_down, burst = rng.standard_exponential((3, _N_HOURS))
        high = np.maximum(open_, close) * (1.0 + 0.4 * sigma * wick_up)
        low = np.minimum(open_, close) / (1.0 + 0.4 * sigma * wick_down)
        move = np.abs(np.diff(log_c, prepend=log_o0)) / np.maximum(sigma, 1e-12)
        activity = (0.4 + 0.6 * burst) * (1.0 + move) / 2.0
        # The pair's share of the coin's daily turnover (a tenth), spread over the hours, in base units.
        volume = p.coin.market_cap * p.turnover / 240.0 * activity / close

        # Round to a tick: 8 significant digits at the start price (like an exchange's price filter).
        decimals = 7 - math.floor(math.log10(p.start_price))
        open_, high, low, close = (np.round(a, decimals) for a in (open_, high, low, close))
        low = np.maximum(low, 10.0**-decimals)
        v_dec = max(0, 6 - math.floor(math.log10(float(volume.mean()))))
        volume = np.maximum(np.round(volume, v_dec), 10.0**-v_dec)

        keep = np.ones(_N_HOURS, dtype=bool)
        keep[: p.listed] = False
        for first, length in p.gaps:
            keep[first: first + length] = False
        sel = np.flatnonzero(keep) if not keep.all() else slice(None)
        return _Hourly(self.hours[sel], open_[sel], high[sel], low[sel], close[sel], volume[sel])


# ---------------------------------------------------------------------------------------------- source
class SampleSource(MarketSource):
    """The synthetic market (see the module docstring). Safe to call from several threads.

    ``cache_size`` bounds how many coins' hourly histories are kept (least recently used first out).
    One coin takes ~0.9 MB, so the default (256: every coin with a pair) holds at most ~230 MB; a smaller
    cache trades memory for time (a coin not in the cache is regenerated in ~3 ms).
    """

    name = "sample"
    exchange = "sample"
    synthetic = True

    def __init__(self, *, cache_size: int = 256):
        self._profiles, self._markets = _build_roster()
        self._coins = [p.coin for p in self._profiles]
        first_by_symbol: dict[str, int] = {}
        for i, p in enumerate(self._profiles):
            first_by_symbol.setdefault(p.coin.symbol, i)
        self._pair_index = {m.pair: first_by_symbol[m.base] for m in self._markets}
        self._generator = _Generator(self._profiles)
        self._cache: OrderedDict[int, _Hourly] = OrderedDict()
        self._cache_size = max(1, int(cache_size))
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ MarketSource
    def top_coins(self, n: int) -> list[Coin]:
        return list(self._coins[: max(0, int(n))])

    def markets(self) -> list[Market]:
        return list(self._markets)

    def default_end_ms(self, timeframe: str) -> int:
        return SAMPLE_END_MS

    def candles(self, market: Market, timeframe: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        tf = _timeframe(timeframe)
        index = self._pair_index.get(market.pair)
        if index is None:
            raise SourceError(f"unknown pair {market.pair} on the sample market")
        start_ms, end_ms = int(start_ms), int(end_ms)
        if end_ms <= start_ms:
            return empty_candles()
        h = self._hourly(index)
        offset = _WEEK_OFFSET if timeframe == "1w" else 0
        # Buckets b with start <= b < end and b + tf <= SAMPLE_END (closed), i.e. hours in [lo, hi).
        lo = -((offset - start_ms) // tf) * tf + offset
        hi = min(-((offset - end_ms) // tf) * tf + offset, (SAMPLE_END_MS - offset) // tf * tf + offset)
        i0, i1 = np.searchsorted(h.time, [lo, hi])
        if i1 <= i0:
            return empty_candles()
        t = h.time[i0:i1]
        if tf == _HOUR:
            return candles_from_arrays(t, h.open[i0:i1], h.high[i0:i1], h.low[i0:i1], h.close[i0:i1], h.volume[i0:i1])
        bucket = (t - offset) // tf * tf + offset
        starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
        ends = np.r_[starts[1:], t.size] - 1
        return candles_from_arrays(
            bucket[starts],
            h.open[i0:i1][starts],
            np.maximum.reduceat(h.high[i0:i1], starts),
            np.minimum.reduceat(h.low[i0:i1], starts),
            h.close[i0:i1][ends],
            np.add.reduceat(h.volume[i0:i1], starts),
        )

    # ------------------------------------------------------------------ extras
    def profiles(self) -> pd.DataFrame:
        """How each coin is generated, indexed by coin_id, in rank order (for docs, tests and curiosity).

        Columns: symbol, name, market_cap, rank, kind (benchmark/regular/stable/flat/twin), rho (the mixing
        weight with BTC's shocks), vol (hourly), lag_hours, noise, listed (first candle's open time),
        gaps (number of missing runs), twin_of (coin_id), pairs (its markets, ``!`` marking inactive ones).
        """
        pairs: dict[int, list[str]] = {}
        for m in self._markets:
            pairs.setdefault(self._pair_index[m.pair], []).append(m.pair + ("" if m.active else "!"))
        rows = []
        for i, p in enumerate(self._profiles):
            rows.append({
                "coin_id": p.coin.coin_id, "symbol": p.coin.symbol, "name": p.coin.name,
                "market_cap": p.coin.market_cap, "rank": p.coin.market_cap_rank, "kind": p.kind,
                "rho": p.rho, "vol": p.vol, "lag_hours": p.lag, "noise": p.noise,
                "listed": pd.Timestamp(SAMPLE_START_MS + p.listed * _HOUR, unit="ms", tz="UTC"),
                "gaps": len(p.gaps),
                "twin_of": None if p.twin_of is None else self._profiles[p.twin_of].coin.coin_id,
                "pairs": ",".join(pairs.get(i, [])),
            })
        return pd.DataFrame(rows).set_index("coin_id")

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    # ------------------------------------------------------------------ internals
    def _hourly(self, index: int) -> _Hourly:
        with self._lock:
            hit = self._cache.get(index)
            if hit is not None:
                self._cache.move_to_end(index)
                return hit
        # Generated outside the lock: two threads may both generate a coin, with identical results.
        fresh = self._generator.hourly(index)
        with self._lock:
            hit = self._cache.setdefault(index, fresh)
            self._cache.move_to_end(index)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return hit


def _timeframe(timeframe: str) -> int:
    tf = TIMEFRAMES.get(timeframe)
    if tf is None:
        raise SourceError(f"unknown timeframe {timeframe!r}; the sample market has {', '.join(SAMPLE_TIMEFRAMES)}")
    if tf < _HOUR:
        raise SourceError(
            f"the sample market has no {timeframe} candles: it generates hourly data "
            f"(timeframes {', '.join(SAMPLE_TIMEFRAMES)})"
        )
    return tf
