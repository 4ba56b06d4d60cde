import datetime as dt

import pytest

from cryptorsi.config import AnalysisConfig
from cryptorsi.errors import ConfigError


@pytest.mark.parametrize(
    "field, value",
    [
        ("top_n_coins", 0),
        ("top_n_coins", 2.5),
        ("top_n_coins", "ten"),
        ("top_n_coins", True),
        ("timeframes", "7x"),
        ("timeframes", ""),
        ("timeframes", "1h,1M"),
        ("weeks", -3),
        ("weeks", 0),
        ("weeks", float("nan")),
        ("rsi_period", 1),
        ("rsi_method", "magic"),
        ("correlation_threshold", 1.5),
        ("correlation_threshold", -0.1),
        ("low_cap_percentile", 101),
        ("source", "nowhere"),
        ("quote", ""),
        ("quote", "US DC"),
        ("benchmark", "B-T-C"),
        ("db_path", "  "),
        ("bus_url", "kafka://x"),
        ("status_port", 70000),
        ("binance_url", "ftp://example.com"),
        ("binance_url", "http://127.0.0.1:8000/api/v3"),
        ("coingecko_url", "not a url"),
        ("end", "yesterday-ish"),
        ("include_stablecoins", "yes"),
        ("min_overlap", 1),
    ],
)
def test_bad_value_raises_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError) as info:
        AnalysisConfig(**{field: value})
    assert isinstance(info.value, ConfigError)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert "\n" not in str(info.value)


def test_normalisation():
    cfg = AnalysisConfig(timeframes="1h, 4h,1h,1d", quote="usdc,USDT", rsi_method="SMA", source="Sample",
                         top_n_coins="40", weeks="2.5", end="2025-06-30", benchmark="btc",
                         binance_url="http://127.0.0.1:9000/")
    assert cfg.timeframes == ("1h", "4h", "1d")
    assert cfg.quote == ("USDC", "USDT")
    assert cfg.rsi_method == "sma" and cfg.source == "sample" and cfg.benchmark == "BTC"
    assert cfg.top_n_coins == 40 and cfg.weeks == 2.5
    assert cfg.end == dt.datetime(2025, 6, 30, tzinfo=dt.timezone.utc)
    assert cfg.binance_url == "http://127.0.0.1:9000"


def test_round_trip_without_the_api_key():
    cfg = AnalysisConfig(source="sample", coingecko_api_key="CG-secret", end="2025-01-02T03:00Z")
    stored = cfg.to_dict()
    assert "coingecko_api_key" not in stored and "CG-secret" not in repr(stored) and "CG-secret" not in repr(cfg)
    again = AnalysisConfig.from_dict(stored | {"windows": {"1h": [0, 1]}})
    assert again == cfg and again.coingecko_api_key is None


def test_replace_validates_again():
    cfg = AnalysisConfig()
    assert cfg.replace(rsi_period=21).rsi_period == 21
    with pytest.raises(ConfigError, match="^rsi_period: "):
        cfg.replace(rsi_period=0)


def test_the_default_quote_fits_the_exchange():
    assert AnalysisConfig().quote == ("USDC",)
    assert AnalysisConfig(exchange="kraken").quote == AnalysisConfig(exchange="coinbase").quote == ("USD", "USDC")
    assert AnalysisConfig(exchange="kraken", quote="EUR").quote == ("EUR",)  # a quote given is kept
    assert AnalysisConfig.from_dict(AnalysisConfig(exchange="coinbase").to_dict()).quote == ("USD", "USDC")
