"""The bus codec: every event type survives encode/decode exactly, compactly, and nothing else is accepted."""

from __future__ import annotations

import dataclasses
import json
import struct
import zoneinfo

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal, assert_index_equal, assert_series_equal

from cryptorsi import events as ev
from cryptorsi.events import EVENT_TYPES
from cryptorsi.market import Coin, Listing, candles_from_arrays, empty_candles
from cryptorsi.runtime.codec import CodecError, decode, encode

H = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01 UTC, in ms


# ================================================================================================ helpers
def assert_same(a, b, where="event"):
    """Deep, type-strict equality: frames/series/indexes exactly (floats bitwise), tuples stay tuples..."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if a is pd.NaT or a is pd.NA:
        assert b is a, where
    elif isinstance(a, pd.DataFrame):
        assert_frame_equal(a, b, check_exact=True, check_freq=True, check_flags=True)
        assert_index_equal(a.columns, b.columns, exact=True)
        assert_index_equal(a.index, b.index, exact=True)
        for i in range(a.shape[1]):
            _same_bits(a.iloc[:, i], b.iloc[:, i], f"{where}[{a.columns[i]!r}]")
    elif isinstance(a, pd.Series):
        assert_series_equal(a, b, check_exact=True, check_freq=True, check_flags=True)
        assert_index_equal(a.index, b.index, exact=True)
        _same_bits(a, b, where)
    elif isinstance(a, pd.Index):
        assert_index_equal(a, b, exact=True)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), where
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, float):
        assert struct.pack("<d", a) == struct.pack("<d", b), f"{where}: {a!r} != {b!r}"
    elif isinstance(a, pd.Timestamp):
        assert a == b and a.unit == b.unit and str(a.tz) == str(b.tz), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _same_bits(a: pd.Series, b: pd.Series, where: str) -> None:
    if isinstance(a.dtype, np.dtype) and a.dtype.kind in "biufcmM":
        assert a.to_numpy().tobytes() == b.to_numpy().tobytes(), f"{where}: bits differ"


def round_trip(event):
    data = encode(event)
    assert isinstance(data, bytes)
    back = decode(data)
    assert_same(event, back)
    return back


# ================================================================================================ payloads
BTC = Listing(Coin("bitcoin", "BTC", "Bitcoin", 1.31e12, 1), "binance", "BTC/USDC", "USDC")
PEPE = Listing(Coin("pepe", "PEPE", "Pepe", None, None), "binance", "PEPE/USDT", "USDT")


def candles(n: int = 500, *, gaps=(7, 8, 9, 250), seed: int = 1) -> pd.DataFrame:
    """A candle frame with missing candles (gaps), a NaN volume and float noise."""
    rng = np.random.default_rng(seed)
    open_ms = np.delete(np.arange(n + len(gaps), dtype=np.int64), list(gaps))[:n] * H + T0
    close = 40_000 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    frame = candles_from_arrays(open_ms, close * 0.999, close * 1.01, close * 0.99, close, rng.random(n) * 1e3)
    if n > 3:
        frame.iloc[3, 4] = np.nan
    return frame


def rsi_series(n: int = 300) -> pd.Series:
    idx = pd.DatetimeIndex(pd.to_datetime(np.arange(n, dtype=np.int64) * H + T0, unit="ms", utc=True), name="open_time")
    return pd.Series(np.random.default_rng(2).uniform(0, 100, n), index=idx, name="rsi")


def correlations() -> pd.DataFrame:
    return pd.DataFrame({
        "timeframe": ["1h", "1h", "4h"],
        "coin_id": ["ethereum", "pepe", "ethereum"],
        "symbol": ["ETH", "PEPE", None],
        "correlation": [0.9123456789012345, np.nan, -0.0],
        "n_points": np.array([8400, 12, 2100], dtype=np.int64),
        "market_cap": [4.1e11, None, 4.1e11],
        "low_cap": [False, True, False],
        "p_value": [1e-300, np.inf, 5e-324],
    })


def failures() -> pd.DataFrame:
    return pd.DataFrame({
        "timeframe": pd.Series([], dtype=object),
        "coin_id": pd.Series([], dtype=object),
        "stage": pd.Series([], dtype="str"),
        "reason": pd.Series([], dtype="str"),
    })


def sample_events() -> list:
    started = pd.Timestamp("2024-05-01 12:00:00.123456", tz="UTC")
    return [
        ev.SessionStarted("s1", {
            "top_n": 50, "timeframes": ("1h", "4h", "1d"), "quotes": ["USDC", "USDT"], "rsi_period": 14,
            "min_points": 100, "low_cap_threshold": None, "fraction": 0.1, "nan": float("nan"), "inf": float("-inf"),
            "nested": {"a": [1, (2, 3)], "b": {"c": True, "d": 1}}, "np": np.float64(0.30000000000000004),
            "big": 2**70, "start": pd.Timestamp("2023-01-01", tz="UTC"), "empty": {}, "empty_t": (),
        }, started),
        ev.FetchTopCoinsRequested("s1", ev.SourceSpec("live", "http://127.0.0.1:9", None), 200, ("USDC", "USDT"),
                                  "BTC", False),
        ev.TopCoinsFetched("s1", (BTC, PEPE),
                           (ev.ExcludedCoin(Coin("tether", "USDT", "Tether", 1.1e11, 3), "stablecoin"),)),
        ev.TopCoinsFetched("s1", ()),
        ev.FetchHistoricalPricesRequested("s1", ev.SourceSpec("cache", db_path="/tmp/x.db"), BTC, "1h", T0,
                                          T0 + 8400 * H),
        ev.HistoricalPricesFetched("s1", BTC, "1h", candles(), candles(20, gaps=(), seed=3)),
        ev.HistoricalPricesFetched("s1", PEPE, "4h", empty_candles(), empty_candles()),
        ev.CalculateRSIRequested("s1", BTC, "1h", candles()["close"], 14, "wilder"),
        ev.RSICalculated("s1", BTC, "1h", rsi_series(), 14, "wilder"),
        ev.RSICalculated("s1", PEPE, "1d", rsi_series(0), 14, "wilder"),
        ev.CorrelationAnalyzed("s1", BTC, "1h", 0.8765432109876543, 8386),
        ev.CoinProcessingFailed("s1", PEPE, "4h", "fetch", "no candles: exchange returned nothing"),
        ev.FinalResultsReady("s1", correlations(), failures(), 1e8, False,
                             {"prices": 3, "rsi": 3, "correlations": 2, "failures": 1}),
        ev.FinalResultsReady("s1", correlations().iloc[:0], failures(), None, True),
        ev.ResultsSaved("s1", "completed"),
        ev.DisplayCompleted("s1"),
        ev.RunFailed("s1", "CoinGecko is unreachable: HTTP 503"),
        ev.TaskFailed("s1", "fetcher", "fetch", "ValueError: bad value ✗ — ünïcode"),
        ev.ProgressUpdated("s1", "1h", 10, 50, 2, {"eta_s": 12.5, "coin": "ETH", "rate": float("inf")}),
        ev.ProgressUpdated("s1", "1h", 0, 0),
        ev.FetchProgress("s1", "1h", 3, 9, 1, 4),
    ]


# ================================================================================================ tests
def test_samples_cover_every_event_type():
    assert {type(e).__name__ for e in sample_events()} == set(EVENT_TYPES)


@pytest.mark.parametrize("event", sample_events(), ids=lambda e: type(e).__name__)
def test_round_trip_every_event_type(event):
    round_trip(event)


def test_candle_frame_keeps_index_dtypes_and_gaps():
    frame = candles()
    back = round_trip(ev.HistoricalPricesFetched("s", BTC, "1h", frame, frame.iloc[:0])).candles
    assert back.index.name == "open_time" and str(back.index.tz) == "UTC"
    assert back.index.dtype == frame.index.dtype
    assert list(back.columns) == ["open", "high", "low", "close", "volume"]
    assert np.isnan(back["volume"].iloc[3])
    assert (np.diff(back.index.asi8) > np.diff(frame.index.asi8).min()).sum() == 2  # the two gaps survive
    back.iloc[0, 0] = 1.0  # decoded frames are ordinary, writable frames


def test_floats_are_bit_identical():
    odd_nan = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF))[0]
    values = np.array([0.1, -0.0, np.inf, -np.inf, np.nan, odd_nan, 5e-324, np.finfo(float).max])
    idx = pd.DatetimeIndex(pd.to_datetime(np.arange(len(values)) * H + T0, unit="ms", utc=True), name="open_time")
    series = pd.Series(values, index=idx, name="close")
    back = round_trip(ev.CalculateRSIRequested("s", BTC, "1h", series, 14, "wilder")).close
    assert back.to_numpy().tobytes() == values.tobytes()
    scalars = ev.ProgressUpdated("s", "1h", 1, 2, 0, {"nan": odd_nan, "neg0": -0.0, "tiny": 5e-324})
    back = decode(encode(scalars)).extra
    assert struct.pack("<d", back["nan"]) == struct.pack("<d", odd_nan)
    assert str(back["neg0"]) == "-0.0"


def test_long_string_columns_use_binary_buffers():
    names = [f"coin-{i}-ü" if i % 7 else None for i in range(1_000)]
    frame = pd.DataFrame({"coin": pd.array(names, dtype="str"), "obj": pd.Series(names, dtype=object),
                          "lone_surrogate": ["\udc80x"] * 1_000})
    back = round_trip(ev.FinalResultsReady("s", frame, frame.iloc[:5], None, False)).correlations
    assert back["obj"].iloc[0] is None and back["obj"].iloc[1] == "coin-1-ü"


def test_result_frames_with_missing_values_and_mixed_dtypes():
    frame = pd.DataFrame({
        "name": ["a", None, "c"],
        "ratio": [0.5, np.nan, None],
        "mixed": [1, "two", None],
        "nullable": pd.array([1, None, 3], dtype="Int64"),
        "flag": pd.array([True, None, False], dtype="boolean"),
        "kind": pd.Categorical(["x", "y", "x"]),
        "pd_string": pd.array(["p", None, "q"], dtype="string"),
        "seen": pd.to_datetime([T0, T0 + H, T0 + 2 * H], unit="ms").tz_localize("UTC").tz_convert("Europe/Paris"),
        "obj_nan": pd.Series(["x", np.nan, "z"], dtype=object, index=["r1", "r2", "r3"]),
        "obj_none": pd.Series(["x", None, "z"], dtype=object, index=["r1", "r2", "r3"]),
    }, index=pd.Index(["r1", "r2", "r3"], name="row"))
    back = round_trip(ev.FinalResultsReady("s", frame, frame.iloc[:0], None, False)).correlations
    assert back["name"].iloc[1] is np.nan or pd.isna(back["name"].iloc[1])
    assert back["mixed"].tolist() == [1, "two", None]
    assert back["obj_nan"].dtype == object and back["obj_nan"].iloc[1] != back["obj_nan"].iloc[1]  # NaN stays NaN
    assert back["obj_none"].dtype == object and back["obj_none"].iloc[1] is None


def test_indexes_and_column_labels():
    multi = pd.DataFrame(np.arange(6.0).reshape(3, 2), columns=pd.Index([10, 20], name="period"),
                         index=pd.MultiIndex.from_tuples([("1h", "BTC"), ("1h", "ETH"), ("4h", "BTC")],
                                                         names=["timeframe", "symbol"]))
    round_trip(ev.FinalResultsReady("s", multi, pd.DataFrame(), None, False))
    hours = pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC", name="open_time")
    hourly = pd.Series([1.0, 2.0, 3.0], index=hours)
    back = round_trip(ev.RSICalculated("s", BTC, "1h", hourly, 14, "wilder")).rsi
    assert back.index.freq == hourly.index.freq
    duplicated = pd.DataFrame({"x": [1.0, 2.0, 3.0], "x2": ["a", "b", None]}, index=pd.Index(["BTC", "BTC", "ETH"]))
    round_trip(ev.FinalResultsReady("s", duplicated, duplicated.T, None, False))
    ranged = pd.DataFrame({"x": [1.0, 2.0]}, index=pd.RangeIndex(5, 9, 2, name="n"))
    back = round_trip(ev.FinalResultsReady("s", ranged, ranged, 1.0, True))
    assert isinstance(back.correlations.index, pd.RangeIndex)


def test_scalars_keep_their_types():
    extra = {"int": 1, "bool": True, "float": 1.0, "none": None, "str": "1", "tuple": (1, (2,)), "list": [1, [2]],
             "np_int": np.int64(7), "np_bool": np.bool_(True), "np_f32": np.float32(0.1),
             "ts_ns": pd.Timestamp("2024-01-01 00:00:00.000000001"),
             "ts_paris": pd.Timestamp("2024-06-01 12:00", tz="Europe/Paris"),
             "ts_offset": pd.Timestamp("2024-06-01T12:00:00+05:30"),
             "ts_zone": pd.Timestamp("2024-06-01", tz=zoneinfo.ZoneInfo("America/New_York")), "nat": pd.NaT,
             "delta": pd.Timedelta(minutes=90), "int_keys": {1: "a", (2, 3): "b"}, "frozen": frozenset({1, 2}),
             "bytes": b"\x00\xffraw", "array": np.arange(6, dtype=np.int32).reshape(2, 3), "listing": BTC}
    back = round_trip(ev.ProgressUpdated("s", "1h", 1, 2, 0, extra)).extra
    assert type(back["np_f32"]) is np.float32 and type(back["bool"]) is bool and type(back["int"]) is int
    assert back["ts_ns"].value == extra["ts_ns"].value


def test_rejects_unknown_types():
    @dataclasses.dataclass(frozen=True)
    class NotAnEvent(ev.Event):
        x: int = 1

    with pytest.raises(CodecError, match="not an event type"):
        encode(NotAnEvent("s"))
    with pytest.raises(CodecError, match="cannot encode"):
        encode(ev.ProgressUpdated("s", "1h", 1, 2, 0, {"obj": object()}))
    with pytest.raises(CodecError, match="not registered"):
        encode(ev.ProgressUpdated("s", "1h", 1, 2, 0, {"dc": NotAnEvent("s")}))

    data = bytearray(encode(ev.RunFailed("s", "why")))
    head_len = struct.unpack_from("<I", data, 4)[0]
    header = json.loads(bytes(data[8:8 + head_len]))
    header["t"] = "EventFromTheFuture"
    forged = data[:4] + struct.pack("<I", len(json.dumps(header))) + json.dumps(header).encode()
    with pytest.raises(CodecError, match="unknown event type 'EventFromTheFuture'"):
        decode(bytes(forged))
    with pytest.raises(CodecError, match="not a cryptorsi bus message"):
        decode(b"{\"json\": true}")
    with pytest.raises(CodecError):
        decode(bytes(data[:-2]))  # truncated header


def test_size_is_about_the_raw_binary_size():
    n = 8_400
    frame = candles(n)
    event = ev.HistoricalPricesFetched("s", BTC, "1h", frame, empty_candles())
    data = encode(event)
    raw = n * 8 * 6  # five float64 columns and the int64 open times
    assert raw <= len(data) < raw + 4_096
    exact_json = json.dumps({"columns": list(frame.columns), "index": frame.index.asi8.tolist(),
                             "data": frame.to_numpy().tolist()})  # repr floats: the shortest exact JSON
    assert len(data) < len(exact_json) / 2
    small = encode(ev.TaskFailed("s", "agent", "task", "boom"))
    assert len(small) < 120
