"""The synthetic sample market: roster, determinism, slicing, aggregation, quirks and built-in correlation."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from cryptorsi.analytics import low_cap_threshold
from cryptorsi.errors import SourceError
from cryptorsi.market import CANDLE_COLUMNS, TIMEFRAMES, Market
from cryptorsi.sources.base import MarketSource
from cryptorsi.sources.sample import SAMPLE_END_MS, SAMPLE_START_MS, SAMPLE_TIMEFRAMES, SampleSource
from cryptorsi.sources.universe import select_universe

HOUR = 3_600_000
DAY = 86_400_000
WEEK = 7 * DAY
WINDOW = 50 * WEEK  # the default analysis window


@pytest.fixture(scope="module")
def src() -> SampleSource:
    return SampleSource(cache_size=300)


@pytest.fixture(scope="module")
def profiles(src) -> pd.DataFrame:
    return src.profiles()


def market(pair: str) -> Market:
    base, quote = pair.split("/")
    return Market(pair, base, quote)


def usdc_pair(src: SampleSource, symbol: str) -> Market:
    return next(m for m in src.markets() if m.base == symbol and m.quote == "USDC")


def all_hours(src: SampleSource, pair: str) -> pd.DataFrame:
    return src.candles(market(pair), "1h", SAMPLE_START_MS, SAMPLE_END_MS)


def digest(frame: pd.DataFrame) -> str:
    h = hashlib.sha256(frame.index.as_unit("ms").asi8.tobytes())
    h.update(np.ascontiguousarray(frame[list(CANDLE_COLUMNS)].to_numpy()).tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------- roster
def test_is_a_synthetic_market_source(src):
    assert isinstance(src, MarketSource)
    assert (src.name, src.exchange, src.synthetic) == ("sample", "sample", True)
    assert set(SAMPLE_TIMEFRAMES) >= {"1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w"}
    for tf in TIMEFRAMES:
        assert src.default_end_ms(tf) == SAMPLE_END_MS
    assert pd.Timestamp(SAMPLE_END_MS, unit="ms", tz="UTC") == pd.Timestamp("2026-01-01T00:00Z")
    assert SAMPLE_END_MS - SAMPLE_START_MS >= 110 * WEEK


def test_top_coins_are_ranked_by_cap_and_span_four_orders(src):
    coins = src.top_coins(10_000)
    assert len(coins) >= 250
    assert (coins[0].coin_id, coins[0].symbol) == ("bitcoin", "BTC")
    assert [c.market_cap_rank for c in coins] == list(range(1, len(coins) + 1))
    caps = np.array([c.market_cap for c in coins])
    assert np.all(np.diff(caps) < 0)
    assert caps[0] / caps[-1] >= 1e4
    assert 1e6 <= caps[-1] <= 1e7 and caps[0] >= 1e12
    assert len({c.coin_id for c in coins}) == len(coins)
    assert all(c.symbol == c.symbol.upper() and c.symbol.isalnum() for c in coins)
    assert all(c.coin_id.startswith("sample-") for c in coins if c.symbol not in ("BTC", "ETH"))
    assert src.top_coins(40) == coins[:40]
    assert src.top_coins(0) == []


def test_markets_look_like_binance_spot(src, profiles):
    markets = src.markets()
    pairs = [m.pair for m in markets]
    assert len(pairs) == len(set(pairs))
    assert {"BTC/USDC", "BTC/USDT"} <= set(pairs)
    assert all(m.pair == f"{m.base}/{m.quote}" and m.quote in ("USDC", "USDT") for m in markets)
    inactive = [m for m in markets if not m.active]
    assert 1 <= len(inactive) <= 2 and all(m.quote == "USDC" for m in inactive)
    symbols = {c.symbol for c in src.top_coins(10_000)}
    usdc = {m.base for m in markets if m.quote == "USDC"}
    usdt = {m.base for m in markets if m.quote == "USDT"}
    no_pair = symbols - usdc - usdt
    assert 3 <= len(no_pair) <= 10
    assert len(usdc) >= 0.95 * len(symbols) and 0.8 * len(usdc) <= len(usdt) < len(symbols)
    assert usdt - usdc  # a few coins trade against USDT only


# --------------------------------------------------------------------------------------- interface
def test_unknown_pair_and_short_timeframes_raise_source_error(src):
    with pytest.raises(SourceError, match="unknown pair"):
        src.candles(market("NOPE/USDC"), "1h", SAMPLE_START_MS, SAMPLE_END_MS)
    with pytest.raises(SourceError, match="unknown pair"):
        src.candles(market("BASA/USDC"), "1h", SAMPLE_START_MS, SAMPLE_END_MS)  # a coin with no pair
    for tf in ("1m", "5m", "30m"):
        with pytest.raises(SourceError, match="1h"):
            src.candles(market("BTC/USDC"), tf, SAMPLE_START_MS, SAMPLE_END_MS)
    with pytest.raises(SourceError, match="timeframe"):
        src.candles(market("BTC/USDC"), "1M", SAMPLE_START_MS, SAMPLE_END_MS)


def test_frame_convention_and_requests_outside_the_span(src):
    frame = src.candles(market("ETH/USDC"), "4h", SAMPLE_END_MS - WEEK, SAMPLE_END_MS)
    assert list(frame.columns) == list(CANDLE_COLUMNS)
    assert isinstance(frame.index, pd.DatetimeIndex) and str(frame.index.tz) == "UTC"
    assert frame.index.name == "open_time" and frame.index.is_monotonic_increasing and frame.index.is_unique
    assert all(frame[c].dtype == np.float64 for c in CANDLE_COLUMNS)
    assert len(frame) == 42 and frame.index[-1] == pd.Timestamp("2025-12-31T20:00Z")

    before = src.candles(market("ETH/USDC"), "1h", SAMPLE_START_MS - 10 * DAY, SAMPLE_START_MS)
    after = src.candles(market("ETH/USDC"), "1d", SAMPLE_END_MS, SAMPLE_END_MS + 10 * DAY)
    reversed_ = src.candles(market("ETH/USDC"), "1d", SAMPLE_END_MS, SAMPLE_START_MS)
    for empty in (before, after, reversed_):
        assert len(empty) == 0 and list(empty.columns) == list(CANDLE_COLUMNS)
    overlapping = src.candles(market("ETH/USDC"), "1d", SAMPLE_START_MS - 10 * DAY, SAMPLE_START_MS + 5 * DAY)
    assert len(overlapping) == 5 and overlapping.index[0].value // 1_000_000 == SAMPLE_START_MS
    beyond = src.candles(market("ETH/USDC"), "1h", SAMPLE_END_MS - 5 * HOUR, SAMPLE_END_MS + 10 * DAY)
    assert len(beyond) == 5


def test_only_closed_candles_are_returned(src):
    weeks = src.candles(market("BTC/USDC"), "1w", SAMPLE_START_MS, SAMPLE_END_MS + 30 * DAY)
    # Weekly candles open on Mondays; the week of 2025-12-29 is not over at SAMPLE_END.
    assert (weeks.index.day_of_week == 0).all()
    assert weeks.index[-1] == pd.Timestamp("2025-12-22T00:00Z")
    three = src.candles(market("BTC/USDC"), "3d", SAMPLE_START_MS, SAMPLE_END_MS)
    assert (three.index.as_unit("ms").asi8 % (3 * DAY) == 0).all()
    assert three.index[-1] == pd.Timestamp("2025-12-29T00:00Z")


# ------------------------------------------------------------------------------------- determinism
def test_two_instances_give_byte_identical_frames(src):
    other = SampleSource(cache_size=2)
    for pair in ("BTC/USDC", "ETH/USDT", "HARB/USDC", "WBTC/USDC", "FUSD/USDC"):
        for tf in ("1h", "4h", "1d"):
            a = src.candles(market(pair), tf, SAMPLE_END_MS - WINDOW, SAMPLE_END_MS)
            b = other.candles(market(pair), tf, SAMPLE_END_MS - WINDOW, SAMPLE_END_MS)
            pd.testing.assert_frame_equal(a, b, check_exact=True)
            assert digest(a) == digest(b)


def test_frames_are_identical_in_another_process(src):
    pairs = ["BTC/USDC", "AETH/USDC", "WETH/USDT"]
    code = textwrap.dedent(f"""
        import hashlib, numpy as np
        from cryptorsi.market import Market
        from cryptorsi.sources.sample import SampleSource, SAMPLE_END_MS
        src = SampleSource()
        for pair in {pairs!r}:
            base, quote = pair.split("/")
            for tf in ("1h", "1d"):
                f = src.candles(Market(pair, base, quote), tf, SAMPLE_END_MS - {WINDOW}, SAMPLE_END_MS)
                h = hashlib.sha256(f.index.as_unit("ms").asi8.tobytes())
                h.update(np.ascontiguousarray(f[["open", "high", "low", "close", "volume"]].to_numpy()).tobytes())
                print(h.hexdigest())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    expected = [digest(src.candles(market(p), tf, SAMPLE_END_MS - WINDOW, SAMPLE_END_MS))
                for p in pairs for tf in ("1h", "1d")]
    assert out.stdout.split() == expected


@pytest.mark.parametrize("tf", ["1h", "4h", "1d", "1w"])
def test_a_sub_window_is_the_slice_of_a_larger_window(src, tf):
    pair = market("COME/USDC")  # a coin with gaps
    big = src.candles(pair, tf, SAMPLE_START_MS, SAMPLE_END_MS)
    for start, end in [(SAMPLE_END_MS - WINDOW, SAMPLE_END_MS),
                       (SAMPLE_START_MS + 37 * DAY + 5 * HOUR, SAMPLE_START_MS + 300 * DAY + 13 * HOUR),
                       (SAMPLE_START_MS + 100 * DAY + 1, SAMPLE_START_MS + 100 * DAY + 2 * DAY)]:
        small = src.candles(pair, tf, start, end)
        times = big.index.as_unit("ms").asi8
        expected = big[(times >= start) & (times < end)]
        pd.testing.assert_frame_equal(small, expected, check_exact=True, check_freq=False)


def test_windows_concatenate_to_the_whole(src):
    pair = market("AETH/USDC")
    whole = src.candles(pair, "4h", SAMPLE_START_MS, SAMPLE_END_MS)
    cut = SAMPLE_START_MS + 200 * DAY + 3 * HOUR
    parts = pd.concat([src.candles(pair, "4h", SAMPLE_START_MS, cut), src.candles(pair, "4h", cut, SAMPLE_END_MS)])
    pd.testing.assert_frame_equal(parts, whole, check_exact=True, check_freq=False)


def test_thread_safe_with_a_small_cache():
    shared = SampleSource(cache_size=3)
    reference = SampleSource(cache_size=3)
    pairs = [m.pair for m in reference.markets() if m.quote == "USDC"][:24]
    expected = {p: digest(reference.candles(market(p), "4h", SAMPLE_END_MS - WINDOW, SAMPLE_END_MS)) for p in pairs}
    jobs = pairs * 3
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda p: digest(shared.candles(market(p), "4h", SAMPLE_END_MS - WINDOW, SAMPLE_END_MS)),
                            jobs))
    assert got == [expected[p] for p in jobs]
    assert len(shared._cache) <= 3


def test_generation_is_fast_and_cached_calls_are_cheap():
    fresh = SampleSource(cache_size=300)
    started = time.process_time()
    for pair in [m.pair for m in fresh.markets() if m.quote == "USDC"]:
        fresh.candles(market(pair), "1h", SAMPLE_END_MS - HOUR, SAMPLE_END_MS)
    generation = time.process_time() - started
    started = time.process_time()
    for _ in range(20):
        fresh.candles(market("ETH/USDC"), "1h", SAMPLE_END_MS - WINDOW, SAMPLE_END_MS)
    cached = (time.process_time() - started) / 20
    # Generous bounds (~1 s and ~1 ms on a laptop) on CPU time, which a busy machine does not stretch: they
    # catch a pathological slowdown, not noise.
    assert generation < 15.0
    assert cached < 0.05


# ------------------------------------------------------------------------------------- aggregation
def _resample(hourly: pd.DataFrame, tf: str) -> pd.DataFrame:
    # Fixed-length bins counted from the epoch, like Binance; weeks from a Monday (1970-01-05).
    origin = pd.Timestamp("1970-01-05T00:00Z") if tf == "1w" else "epoch"
    grouped = hourly.resample(f"{TIMEFRAMES[tf] // HOUR}h", origin=origin, closed="left", label="left")
    out = grouped.agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    out = out[grouped["close"].count() > 0]
    tf_ms = TIMEFRAMES[tf]
    return out[out.index.as_unit("ms").asi8 + tf_ms <= SAMPLE_END_MS]  # closed candles only


@pytest.mark.parametrize("pair", ["BTC/USDC", "COME/USDC", "CORA/USDC"])  # plain, with gaps, listed late
@pytest.mark.parametrize("tf", ["2h", "4h", "12h", "1d", "3d", "1w"])
def test_coarse_candles_are_the_aggregation_of_hourly_ones(src, pair, tf):
    hourly = all_hours(src, pair)
    expected = _resample(hourly, tf)
    got = src.candles(market(pair), tf, SAMPLE_START_MS, SAMPLE_END_MS)
    assert got.index.equals(expected.index.as_unit(got.index.unit))
    for col in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(got[col].to_numpy(), expected[col].to_numpy())
    np.testing.assert_allclose(got["volume"].to_numpy(), expected["volume"].to_numpy(), rtol=1e-12)


# -------------------------------------------------------------------------------------- validity
def test_every_candle_is_valid(src):
    for m in src.markets():
        if m.quote != "USDC" and f"{m.base}/USDC" in {x.pair for x in src.markets()}:
            continue
        f = all_hours(src, m.pair)
        o, h, l, c, v = (f[col].to_numpy() for col in CANDLE_COLUMNS)
        assert len(f) > 0 and not f.isna().any().any(), m.pair
        assert np.all(l <= np.minimum(o, c)) and np.all(h >= np.maximum(o, c)), m.pair
        assert np.all(l > 0) and np.all(v > 0), m.pair
        t = f.index.as_unit("ms").asi8
        assert np.all(np.diff(t) > 0) and np.all(t % HOUR == 0), m.pair
        consecutive = np.diff(t) == HOUR
        assert np.array_equal(o[1:][consecutive], c[:-1][consecutive]), m.pair  # open = previous close


def test_late_listings_and_gaps(src, profiles):
    late = profiles[(profiles["listed"] > pd.Timestamp(SAMPLE_START_MS + 30 * DAY, unit="ms", tz="UTC"))
                    & profiles["pairs"].str.contains("/USDC")]
    assert len(late) >= 5
    for symbol, listed in zip(late["symbol"], late["listed"]):
        f = all_hours(src, usdc_pair(src, symbol).pair)
        assert f.index[0] == listed and f.index[-1] == pd.Timestamp(SAMPLE_END_MS - HOUR, unit="ms", tz="UTC")
    # One coin has less than a month of history: too short for a 1d RSI correlation.
    assert (late["listed"] > pd.Timestamp(SAMPLE_END_MS - 30 * DAY, unit="ms", tz="UTC")).sum() == 1

    gapped = profiles[(profiles["gaps"] > 0) & profiles["pairs"].str.contains("/USDC")]
    assert len(gapped) >= 10
    for symbol, n_gaps in zip(gapped["symbol"][:10], gapped["gaps"][:10]):
        f = all_hours(src, usdc_pair(src, symbol).pair)
        steps = np.diff(f.index.as_unit("ms").asi8)
        assert 1 <= (steps > HOUR).sum() <= n_gaps and not f.isna().any().any()
    btc = all_hours(src, "BTC/USDC")
    assert len(btc) == (SAMPLE_END_MS - SAMPLE_START_MS) // HOUR  # the benchmark is complete


# ------------------------------------------------------------------------- stablecoins and twins
def test_stablecoins_are_flat_and_excluded(src, profiles):
    stables = profiles[profiles["kind"].isin(["stable", "flat"])]
    assert len(stables) >= 3
    flat = all_hours(src, usdc_pair(src, stables[stables["kind"] == "flat"]["symbol"].iloc[0]).pair)
    assert (flat[["open", "high", "low", "close"]].to_numpy() == 1.0).all() and (flat["volume"] > 0).all()
    for symbol in stables["symbol"]:
        f = all_hours(src, usdc_pair(src, symbol).pair)
        assert f["low"].min() > 0.99 and f["high"].max() < 1.01
        assert f["close"].std() < 1e-3
    listings, excluded = select_universe(src.top_coins(10_000), src.markets(), exchange="sample", quotes=("USDC",))
    reasons = {x.coin.coin_id: x.reason for x in excluded}
    assert all(reasons.get(cid) == "stablecoin" for cid in stables.index)
    kept, _ = select_universe(src.top_coins(10_000), src.markets(), exchange="sample", quotes=("USDC",),
                              include_stablecoins=True)
    assert set(stables.index) <= {x.coin_id for x in kept}


def test_wrapped_twins_track_their_coin_and_are_excluded(src, profiles):
    twins = profiles[profiles["kind"] == "twin"]
    assert {"WBTC", "WETH"} <= set(twins["symbol"])
    assert any(name.startswith("Wrapped ") and name not in ("Wrapped Bitcoin", "Wrapped Ether")
               for name in twins["name"])
    for symbol, base_id in zip(twins["symbol"], twins["twin_of"]):
        twin = all_hours(src, usdc_pair(src, symbol).pair)["close"]
        base = all_hours(src, usdc_pair(src, profiles.loc[base_id, "symbol"]).pair)["close"]
        ratio = (twin / base).dropna()
        assert len(ratio) == len(twin) and np.abs(ratio - 1).max() < 1e-3
        assert profiles.loc[symbol == profiles["symbol"], "market_cap"].iloc[0] < profiles.loc[base_id, "market_cap"]
    _, excluded = select_universe(src.top_coins(10_000), src.markets(), exchange="sample", quotes=("USDC", "USDT"))
    reasons = {x.coin.coin_id: x.reason for x in excluded}
    assert all(reasons.get(cid) == "wrapped or staked token" for cid in twins.index)


def test_the_universe_of_the_sample_market(src):
    listings, excluded = select_universe(src.top_coins(250), src.markets(), exchange="sample", quotes=("USDC",))
    assert listings[0].coin_id == "bitcoin" and listings[0].pair == "BTC/USDC"
    assert len(listings) >= 225
    reasons = [x.reason for x in excluded]
    assert any(r.startswith("ticker ") and "already maps to" in r for r in reasons)
    assert any(r.startswith("no active USDC pair on sample") and "inactive" in r for r in reasons)
    for listing in listings:  # every listing has candles in the default window (but the very late one on 1d)
        assert len(src.candles(market(listing.pair), "1h", SAMPLE_END_MS - WINDOW, SAMPLE_END_MS)) > 0


# ---------------------------------------------------------------------------- correlation with BTC
@pytest.fixture(scope="module")
def rsi_correlations(src):
    """RSI(14) correlation with BTC (TA-Lib, last 50 weeks, common timestamps) per (coin_id, timeframe)."""
    talib = pytest.importorskip("talib")
    listings, _ = select_universe(src.top_coins(10_000), src.markets(), exchange="sample", quotes=("USDC",))

    def rsi(pair, tf):
        f = src.candles(market(pair), tf, SAMPLE_END_MS - WINDOW, SAMPLE_END_MS)
        return pd.Series(talib.RSI(f["close"].to_numpy(), timeperiod=14), index=f.index).dropna()

    out = {}
    for tf in ("1h", "4h", "1d"):
        btc = rsi("BTC/USDC", tf)
        for listing in listings[1:]:
            coin = rsi(listing.pair, tf)
            common = coin.index.intersection(btc.index)
            if len(common) >= 30:
                out[(listing.coin_id, tf)] = float(np.corrcoef(coin[common], btc[common])[0, 1])
    return listings, out


def test_rsi_correlation_with_btc_spans_zero_to_above_point_nine(rsi_correlations, profiles):
    _, corr = rsi_correlations
    hourly = pd.Series({cid: c for (cid, tf), c in corr.items() if tf == "1h"})
    assert len(hourly) >= 200
    assert hourly.abs().min() < 0.1 and hourly.min() < 0.1
    assert hourly.max() > 0.9 and (hourly > 0.9).sum() >= 10
    assert hourly.between(-0.2, 1.0).all()
    # Spread over the whole range, not two clusters.
    counts = np.histogram(hourly, bins=[-1, 0.2, 0.4, 0.6, 0.8, 1])[0]
    assert (counts >= 20).all(), counts
    # Built in by construction: the realised correlation follows the mixing weight.
    plain = profiles.loc[hourly.index]
    plain = plain[(plain["lag_hours"] == 0) & (plain["noise"] == 0)]
    assert np.corrcoef(plain["rho"], hourly[plain.index])[0, 1] > 0.95


def test_lagged_and_noisy_coins_correlate_more_on_daily_candles(rsi_correlations, profiles):
    _, corr = rsi_correlations
    slow = profiles[((profiles["lag_hours"] >= 4) | (profiles["noise"] >= 2)) & (profiles["rho"] > 0.6)]
    pairs = [(corr[(cid, "1h")], corr[(cid, "1d")]) for cid in slow.index if (cid, "1d") in corr]
    assert len(pairs) >= 5
    assert np.mean([d - h for h, d in pairs]) > 0.1


@pytest.mark.parametrize("top_n", [40, 100, 250])
@pytest.mark.parametrize("tf", ["1h", "4h", "1d"])
def test_low_cap_and_correlated_coins_exist(rsi_correlations, top_n, tf):
    listings, corr = rsi_correlations
    universe = [x for x in listings if x.coin.market_cap_rank <= top_n]
    threshold = low_cap_threshold([x.coin.market_cap for x in universe], 25)
    selected = [x.symbol for x in universe
                if x.coin.market_cap <= threshold and corr.get((x.coin_id, tf), np.nan) >= 0.7]
    assert selected, (top_n, tf)


# ------------------------------------------------------------------------ lead-lag and on/off coins
ADDED_KINDS = ("lagged", "switching")


def test_added_coins_do_not_disturb_the_base_roster(src, profiles):
    assert len(profiles) == 272 and profiles["rank"].tolist() == list(range(1, 273))
    base = profiles[~profiles["kind"].isin(ADDED_KINDS)]
    assert len(base) == 260
    # the base coins keep their generated candles (values taken before the 12 coins were added)
    day = SAMPLE_START_MS + 100 * DAY
    for pair, close in [("ETH/USDC", 2364.0021), ("HARB/USDC", 0.00072869737), ("COME/USDC", 0.050175297),
                        ("BTC/USDC", 45124.002)]:
        f = src.candles(market(pair), "1d", day, day + DAY)
        assert f["close"].iloc[0] == pytest.approx(close, rel=1e-6), pair
    assert src.candles(market("BTC/USDC"), "1h", SAMPLE_END_MS - HOUR, SAMPLE_END_MS)["close"].iloc[0] == 87_500.0
    # ... and their order: the ranks of the base coins only move down past the added ones
    assert (np.diff(base["rank"].to_numpy()) >= 1).all() and base.index[-1] == profiles.index[-1]
    assert profiles.loc[profiles["rank"] <= 80, "kind"].isin(ADDED_KINDS).sum() == 0


def test_lagged_coins_are_documented_and_unambiguous(src, profiles):
    lagged = profiles[profiles["kind"] == "lagged"]
    assert len(lagged) == 9
    assert profiles["lag_candles"].dtype == "Int64"
    assert profiles["lag_candles"].notna().sum() == 9 and profiles["lag_timeframe"].notna().sum() == 9
    got = {(tf, int(k)) for tf, k in zip(lagged["lag_timeframe"], lagged["lag_candles"])}
    assert got == {(tf, k) for tf in ("1h", "4h", "1d") for k in (1, 3, 6)}
    for cid, row in lagged.iterrows():
        assert row["lag_hours"] == row["lag_candles"] * TIMEFRAMES[row["lag_timeframe"]] // HOUR
        assert row["rho"] == pytest.approx(0.9) and row["noise"] == 0
        assert row["symbol"] == f"F{row['lag_timeframe'].upper()}{row['lag_candles']}"
        assert cid == f"sample-follower-{row['lag_timeframe']}-by-{row['lag_candles']}"
        assert "/USDC" in row["pairs"] and "/USDT" in row["pairs"]
    assert (lagged["rank"] <= 250).all() and (lagged["rank"] <= 100).sum() == 3
    assert lagged["gaps"].sum() == 4


@pytest.mark.parametrize("cid", ["sample-follower-1h-by-3", "sample-follower-4h-by-3", "sample-follower-1d-by-6"])
def test_lagged_coins_repeat_btc_returns_k_candles_late(src, profiles, cid):
    """On its timeframe the coin's log return at t is BTC's at t - k candles (mixed with its own news)."""
    row = profiles.loc[cid]
    tf, k = row["lag_timeframe"], int(row["lag_candles"])
    step = pd.Timedelta(milliseconds=TIMEFRAMES[tf])
    coin = np.log(src.candles(market(f"{row['symbol']}/USDC"), tf, SAMPLE_START_MS, SAMPLE_END_MS)["close"])
    btc = np.log(src.candles(market("BTC/USDC"), tf, SAMPLE_START_MS, SAMPLE_END_MS)["close"])
    coin_ret = coin.diff()[coin.index.to_series().diff() == step]
    btc_ret = btc.diff()

    def corr_at(lag):
        shifted = btc_ret.copy()
        shifted.index = shifted.index + lag * step
        j = pd.concat([coin_ret, shifted], axis=1, join="inner").dropna()
        return np.corrcoef(j.iloc[:, 0], j.iloc[:, 1])[0, 1]

    assert corr_at(k) > 0.85
    assert all(abs(corr_at(lag)) < 0.2 for lag in (0, k - 1, k + 1))
    if row["gaps"]:  # whole candles of its timeframe are missing
        steps = coin.index.to_series().diff().dropna()
        assert (steps > step).any()


def test_switching_coins_link_on_and_off(src, profiles):
    switching = profiles[profiles["kind"] == "switching"]
    assert list(switching["symbol"]) == ["SWIA", "SWIB", "SWIC"] and (switching["rank"] <= 250).all()
    assert profiles.loc[switching.index, "lag_candles"].isna().all()
    btc = np.log(all_hours(src, "BTC/USDC")["close"]).diff()
    for cid, row in switching.iterrows():
        runs = src.link_regimes(cid)
        assert list(runs.columns) == ["start", "end", "linked"]
        assert runs["start"].iloc[0] == pd.Timestamp(SAMPLE_START_MS, unit="ms", tz="UTC")
        assert runs["end"].iloc[-1] == pd.Timestamp(SAMPLE_END_MS, unit="ms", tz="UTC")
        assert (runs["start"].iloc[1:].to_numpy() == runs["end"].iloc[:-1].to_numpy()).all()
        assert (runs["linked"].to_numpy()[1:] != runs["linked"].to_numpy()[:-1]).all()  # alternating
        lengths = (runs["end"] - runs["start"])[1:-1]
        assert (lengths >= pd.Timedelta(days=35)).all() and (lengths <= pd.Timedelta(days=84)).all()
        span = runs["end"].iloc[-1] - runs["start"].iloc[0]
        on_share = (runs["end"] - runs["start"])[runs["linked"]].sum() / span
        assert row["rho"] == pytest.approx(0.95 * on_share, rel=1e-9)
        coin = np.log(all_hours(src, f"{row['symbol']}/USDC")["close"]).diff()
        for start, end, linked in runs.itertuples(index=False):
            inside = (coin.index > start) & (coin.index < end)
            c = np.corrcoef(coin[inside].dropna(), btc.reindex(coin.index[inside]).dropna())[0, 1]
            assert (c > 0.85) if linked else (abs(c) < 0.1), (cid, start, linked, c)
    with pytest.raises(ValueError, match="switching"):
        src.link_regimes("bitcoin")


def test_added_coins_are_in_the_universe_as_low_caps(src, profiles):
    added = profiles[profiles["kind"].isin(ADDED_KINDS)]
    for top_n, expected in [(100, {"F1H1", "SWIA", "F4H1", "F1D1"}),
                            (250, {"F1H3", "F4H3", "F1D3", "F1H6", "F4H6", "SWIC", "F1D6"})]:
        listings, excluded = select_universe(src.top_coins(top_n), src.markets(), exchange="sample", quotes=("USDC",))
        kept = {x.symbol for x in listings}
        assert set(added.loc[added["rank"] <= top_n, "symbol"]) <= kept
        assert not {x.coin.symbol for x in excluded} & set(added["symbol"])
        threshold = low_cap_threshold([x.coin.market_cap for x in listings], 25)
        low = {x.symbol for x in listings if x.coin.market_cap <= threshold} & set(added["symbol"])
        assert low == expected, (top_n, low)
