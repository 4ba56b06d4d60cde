"""``SampleSource``: a deterministic synthetic crypto market, so the whole product runs offline.

**The data is synthetic.** Prices, market caps, names and pairs are made up (only ``bitcoin``/BTC and
``ethereum``/ETH borrow real names); nothing here describes a real market.

What the sample market holds
----------------------------
* 272 coins ranked by market cap (BTC ~1.8e12 down to ~5e6, five and a half orders of magnitude),
  ids ``"sample-<words>"`` and distinct made-up tickers, plus BTC and ETH: a base roster of 260 coins
  and 12 coins added for the lead-lag analysis (below), slotted in by market cap.
* Hourly candles from ``SAMPLE_START`` (2023-11-13T00:00Z, a Monday) to ``SAMPLE_END``
  (2026-01-01T00:00Z), 780 days = 111 weeks and 3 days, whatever today's date is. Coarser timeframes
  (2h ... 1w) are exact aggregations of the hourly candles into UTC-aligned buckets, like Binance
  (``1w`` buckets open on Mondays 00:00 UTC; every other timeframe on multiples of its length since the
  epoch). Only closed candles are returned: the week that contains ``SAMPLE_END`` is left out.
  Timeframes below 1h raise :class:`~cryptorsi.errors.SourceError` (a year of minutes for 272 coins is
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
* Built-in lead-lag and unstable links, to be recovered by :mod:`cryptorsi.leadlag`: nine **lagged**
  coins (kind ``"lagged"``, ``F<tf><k>``, e.g. ``F4H3``) repeat BTC's return of exactly ``k`` = 1, 3 or 6
  candles earlier on 1h, 4h or 1d (``rho`` 0.9, BTC's volatility included), so that their RSI follows
  BTC's by ``k`` candles on that timeframe (``profiles()`` columns ``lag_candles``, ``lag_timeframe``;
  only these nine have them); three **switching** coins (kind ``"switching"``, ``SWIA SWIB SWIC``) are
  linked to BTC (``rho`` 0.95) in alternating multi-week regimes and not at all in between
  (:meth:`SampleSource.link_regimes`). Their market caps are small and spread over ranks 81-246, so top
  100 and top 250 runs hold some, as low caps.
* Quirks of a real market: late listings (no candle before the listing hour), interior gaps (absent
  rows, never NaN rows), stablecoins (``Sample USD``/SUSD ..., ``Flat USD``/FUSD is perfectly flat at
  1.0), wrapped and staked twins (``Wrapped Bitcoin``/WBTC tracks BTC to ~0.01 %), coins with no pair,
  USDT-only coins, inactive (``BREAK``) pairs and one ticker shared by two coins. The universe rules
  (:func:`cryptorsi.sources.universe.select_universe`) exclude them like the real ones.

Determinism: every random number comes from a numpy ``PCG64`` generator seeded with
``SeedSequence([MASTER_SEED, stream, coin_index])`` (the index in the base roster; the added coins take
the indices after it and a stream of their own for their parameters, so the base coins' candles are
the same with or without them); each coin's full history is generated at once and
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

import dataclasses
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
_STREAM_COMMON, _STREAM_ROSTER, _STREAM_PATH, _STREAM_ADDED = 0, 1, 2, 3

_N_BASE = 260  # the base roster; _ADDED coins come on top
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
    seed: int  # the coin's index in the path streams (its base rank - 1; 260, 261, ... for the added coins)
    lag_candles: int | None = None  # "lagged" coins: BTC's shocks arrive lag_candles candles of ...
    lag_timeframe: str | None = None  # ... this timeframe late (lag = lag_candles * timeframe, in hours)
    rho_on: float = 0.0  # "switching" coins: the mixing weight while the link is on (0 while off)
    link_on: tuple[tuple[int, int], ...] = ()  # "switching" coins: (first hour, length) of each "on" run


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

# Coins added for the lead-lag and stability analysis (issue 6). The ranks above (_SPECIAL, _NO_PAIR, ...)
# are *base ranks*: positions among the 260 coins of the base roster, whose seeds, parameters and candles
# do not change. The added coins get the next seeds (260, 261, ... in this order: append, never reorder)
# and a market cap between two base coins (``below``: just under the base coin of that base rank), so
# the final ranks (``Coin.market_cap_rank``) of the base coins below them move down.
#   "lagged": r_i(t) = drift + vol * (rho * s(t - L) * z_btc(t - L) + sqrt(1 - rho^2) * s(t) * z_i(t)), with
#             L = lag_candles * the timeframe's hours: the coin repeats BTC's return of L hours earlier.
#   "switching": the mixing weight is rho_on while the link is on and 0 while it is off, in alternating
#             runs of whole days drawn from [min_days, max_days].
# Fields: kind, coin_id, symbol, name, below (base rank), extra; for "lagged" extra = (lag_candles,
# timeframe, gaps as (first hour counted back from SAMPLE_END, length)); for "switching" extra =
# (min_days, max_days).
_LAG_RHO = 0.9
_SWITCH_RHO = 0.95
_ADDED = (
    ("lagged", "sample-follower-1h-by-1", "F1H1", "Follower 1h by 1", 80, (1, "1h", ())),
    ("lagged", "sample-follower-4h-by-1", "F4H1", "Follower 4h by 1", 86, (1, "4h", ())),
    ("lagged", "sample-follower-1d-by-1", "F1D1", "Follower 1d by 1", 91, (1, "1d", ())),
    ("switching", "sample-switch-alpha", "SWIA", "Switch Alpha", 84, (35, 63)),
    ("lagged", "sample-follower-1h-by-3", "F1H3", "Follower 1h by 3", 186,
     (3, "1h", ((2_000 + 5, 3), (1_200 + 17, 5)))),
    ("lagged", "sample-follower-4h-by-3", "F4H3", "Follower 4h by 3", 188, (3, "4h", ((2_400, 8),))),
    ("lagged", "sample-follower-1d-by-3", "F1D3", "Follower 1d by 3", 191, (3, "1d", ((96 * 24, 48),))),
    ("switching", "sample-switch-bravo", "SWIB", "Switch Bravo", 183, (42, 70)),
    ("lagged", "sample-follower-1h-by-6", "F1H6", "Follower 1h by 6", 215, (6, "1h", ())),
    ("lagged", "sample-follower-4h-by-6", "F4H6", "Follower 4h by 6", 222, (6, "4h", ())),
    ("lagged", "sample-follower-1d-by-6", "F1D6", "Follower 1d by 6", 234, (6, "1d", ())),
    ("switching", "sample-switch-charlie", "SWIC", "Switch Charlie", 228, (56, 84)),
)


def _rng(stream: int, index: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([MASTER_SEED, stream, index])))


def _slug(text: str) -> str:
    return "-".join(text.lower().split())


def _market_caps(rng: np.random.Generator) -> np.ndarray:
    """Caps by rank: BTC, ETH, then a Zipf-like curve down to ~5e6 with a little jitter, strictly decreasing."""
    ranks = np.arange(3, _N_BASE + 1, dtype=np.float64)
    top, bottom = 2.6e11, 5.0e6
    slope = math.log(top / bottom) / math.log(_N_BASE / 3)
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
    names = iter(_names(_N_BASE - len(_SPECIAL)))
    # Parameters drawn once for every rank (unused for some kinds), so adding a kind never shifts the rest.
    u_lag, u_noise, u_late, u_gap = (rng.random(_N_BASE + 1) for _ in range(4))
    lags = rng.integers(2, 9, _N_BASE + 1)
    late_days = rng.integers(60, 450, _N_BASE + 1)
    drifts = rng.normal(-0.1, 0.5, _N_BASE + 1) / 8760.0
    start_prices = 10 ** rng.uniform(-4.0, 2.5, _N_BASE + 1)
    vol_jitter = rng.uniform(0.75, 1.3, _N_BASE + 1)
    noise_amp = rng.uniform(1.0, 3.0, _N_BASE + 1)
    turnover = rng.uniform(0.01, 0.12, _N_BASE + 1)
    gap_rngs = [_rng(_STREAM_ROSTER, 1000 + r) for r in range(_N_BASE + 1)]

    profiles: list[_Profile] = []
    for rank in range(1, _N_BASE + 1):
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
            turnover=float(turnover[rank]), seed=rank - 1,
        ))

    profiles = _insert_added(profiles, caps)
    markets: list[Market] = []
    seen: set[str] = set()
    for p in profiles:
        base_rank, sym = p.seed + 1, p.coin.symbol  # added coins (seed >= 260) trade against USDC and USDT
        if base_rank in _NO_PAIR or sym in seen:
            continue
        seen.add(sym)
        if base_rank not in _USDT_ONLY:
            markets.append(Market(f"{sym}/USDC", sym, "USDC", active=base_rank not in _USDC_BREAK))
        if base_rank not in _NO_USDT:
            markets.append(Market(f"{sym}/USDT", sym, "USDT", active=True))
    return profiles, markets


def _insert_added(base: list[_Profile], caps: np.ndarray) -> list[_Profile]:
    """The base roster with the coins of ``_ADDED`` inserted by market cap; final ranks 1..n."""
    added: list[_Profile] = []
    depth_of = lambda cap: math.log10(caps[0] / cap) / math.log10(caps[0] / caps[-1])  # noqa: E731
    for j, (kind, coin_id, symbol, name, below, extra) in enumerate(_ADDED):
        seed = _N_BASE + j
        rng = _rng(_STREAM_ADDED, seed)
        cap = float(np.round(math.sqrt(caps[below - 1] * caps[below]), -3))  # between the two base coins
        vol = (0.0075 + 0.0095 * depth_of(cap)) * float(rng.uniform(0.75, 1.3))
        drift = float(rng.normal(-0.1, 0.5)) / 8760.0
        start_price = float(10 ** rng.uniform(-4.0, 2.5))
        turnover = float(rng.uniform(0.01, 0.12))
        fields = dict(coin=Coin(coin_id, symbol, name, cap, None), kind=kind, vol=vol, drift=drift, noise=0.0,
                      start_price=start_price, listed=0, twin_of=None, turnover=turnover, seed=seed)
        if kind == "lagged":
            lag_candles, timeframe, gaps = extra
            lag = lag_candles * TIMEFRAMES[timeframe] // _HOUR
            added.append(_Profile(rho=_LAG_RHO, lag=lag, lag_candles=lag_candles, lag_timeframe=timeframe,
                                  gaps=tuple((_N_HOURS - back, length) for back, length in gaps), **fields))
        else:  # switching: alternating on/off runs of whole days, starting with a random state
            low, high = extra
            on, runs, day = bool(rng.random() < 0.5), [], 0
            while day < _N_HOURS // 24:
                length = int(rng.integers(low, high + 1))
                if on:
                    runs.append((day * 24, min(length * 24, _N_HOURS - day * 24)))
                on, day = not on, day + length
            share = sum(length for _, length in runs) / _N_HOURS
            added.append(_Profile(rho=_SWITCH_RHO * share, lag=0, gaps=(), rho_on=_SWITCH_RHO,
                                  link_on=tuple(runs), **fields))
    merged = sorted(base + added, key=lambda p: -p.coin.market_cap)  # caps are distinct
    position = {p.seed: i for i, p in enumerate(merged)}
    out = []
    for i, p in enumerate(merged):
        twin_of = None if p.twin_of is None else position[base[p.twin_of].seed]
        out.append(dataclasses.replace(p, coin=dataclasses.replace(p.coin, market_cap_rank=i + 1), twin_of=twin_of))
    return out


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
        rng = _rng(_STREAM_PATH, p.seed)
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
        elif p.kind == "lagged":
            # BTC's whole shock of lag hours earlier, its volatility included: the coin's returns on the
            # lag timeframe are BTC's returns lag_candles candles earlier, mixed with its own news.
            own = rng.standard_normal(_N_HOURS)
            follow = np.empty(_N_HOURS)
            follow[p.lag:] = self.z_btc[: _N_HOURS - p.lag] * self.regime[: _N_HOURS - p.lag]
            follow[: p.lag] = rng.standard_normal(p.lag) * self.regime[: p.lag]
            r = p.drift + p.vol * (p.rho * follow + math.sqrt(1.0 - p.rho**2) * self.regime * own)
        elif p.kind == "switching":
            own = rng.standard_normal(_N_HOURS)
            rho = np.zeros(_N_HOURS)
            for first, length in p.link_on:
                rho[first: first + length] = p.rho_on
            r = p.drift + sigma * (rho * self.z_btc + np.sqrt(1.0 - rho**2) * own)
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
        rng = _rng(_STREAM_PATH, 100_000 + p.seed)  # candles' shape: wicks and volume
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
    One coin takes ~0.9 MB, so the default (272: every coin; 266 have a pair) holds at most ~240 MB; a smaller
    cache trades memory for time (a coin not in the cache is regenerated in ~3 ms).
    """

    name = "sample"
    exchange = "sample"
    synthetic = True

    def __init__(self, *, cache_size: int = 272):
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

        Columns: symbol, name, market_cap, rank, kind (benchmark/regular/stable/flat/twin/lagged/switching),
        rho (the mixing weight with BTC's shocks; for a switching coin its average over the span),
        vol (hourly), lag_hours, noise, listed (first candle's open time), gaps (number of missing runs),
        twin_of (coin_id), pairs (its markets, ``!`` marking inactive ones), lag_candles and lag_timeframe
        (the built-in lead-lag of the "lagged" coins: they follow BTC by ``lag_candles`` candles of
        ``lag_timeframe``; ``<NA>``/None for every other coin, the older 2-8 hour followers included).
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
                "lag_candles": p.lag_candles, "lag_timeframe": p.lag_timeframe,
            })
        frame = pd.DataFrame(rows).set_index("coin_id")
        frame["lag_candles"] = frame["lag_candles"].astype("Int64")
        return frame

    def link_regimes(self, coin_id: str) -> pd.DataFrame:
        """The on/off schedule of a "switching" coin's link to BTC: one row per run, columns ``start``,
        ``end`` (open time of the run's first hour, and the end, exclusive) and ``linked`` (True: mixing
        weight ``rho_on`` = 0.95 with BTC's shocks; False: 0). ``ValueError`` for any other coin."""
        p = next((p for p in self._profiles if p.coin.coin_id == coin_id), None)
        if p is None or p.kind != "switching":
            raise ValueError(f"{coin_id!r} is not a switching coin of the sample market")
        edges = sorted({0, _N_HOURS, *(f for f, _ in p.link_on), *(f + n for f, n in p.link_on)})
        on_starts = {f for f, _ in p.link_on}
        to_time = lambda h: pd.Timestamp(SAMPLE_START_MS + h * _HOUR, unit="ms", tz="UTC")  # noqa: E731
        rows = [{"start": to_time(a), "end": to_time(b), "linked": a in on_starts} for a, b in zip(edges, edges[1:])]
        return pd.DataFrame(rows, columns=["start", "end", "linked"])

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
