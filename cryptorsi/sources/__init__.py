"""Market data sources: ``sample`` (synthetic, offline), ``live`` (CoinGecko + Binance), ``cache`` (the database).

>>> from cryptorsi.config import AnalysisConfig
>>> make_source(AnalysisConfig(source="sample")).synthetic
True
"""

from __future__ import annotations

import os

from cryptorsi.errors import ConfigError
from cryptorsi.exchanges import BINANCE_FAMILY
from cryptorsi.events import SourceSpec
from cryptorsi.sources.base import MarketSource

__all__ = ["MarketSource", "SourceSpec", "make_source", "source_spec", "source_from_spec"]


def source_spec(config) -> SourceSpec:
    """The :class:`SourceSpec` of ``config`` (what a fetcher in another process needs to serve it).

    ``binance_url`` is another name of ``exchange_url`` for the Binance family (binance, binanceus)."""
    url = config.exchange_url
    if config.binance_url is not None:
        if config.exchange not in BINANCE_FAMILY:
            raise ConfigError("binance_url", f"is the API root of binance or binanceus; for {config.exchange} "
                                             "use exchange_url (--exchange-url)")
        if url is not None and url != config.binance_url:
            raise ConfigError("binance_url", f"{config.binance_url} differs from exchange_url {url}: give one")
        url = config.binance_url
    if config.source != "live":
        return SourceSpec(config.source, None, None, config.db_path if config.source == "cache" else None)
    return SourceSpec("live", url, config.coingecko_url, None, config.requests_in_flight, config.exchange)


def make_source(config) -> MarketSource:
    """The source ``config.source`` names, configured from ``config``."""
    return source_from_spec(source_spec(config), coingecko_api_key=config.coingecko_api_key)


def source_from_spec(spec: SourceSpec, *, coingecko_api_key: str | None = None) -> MarketSource:
    """A source for ``spec`` (imported lazily: ccxt is slow to import). The API key defaults to
    ``$COINGECKO_API_KEY``; ``$CRYPTORSI_HTTP_TIMEOUT`` (seconds, default 10) bounds each HTTP request of
    the live source (a slow link may need more; tests use less)."""
    if spec.name == "sample":
        from cryptorsi.sources.sample import SampleSource

        return SampleSource()
    if spec.name == "cache":
        from cryptorsi.sources.cache import CacheSource

        return CacheSource(spec.db_path)
    if spec.name == "live":
        from cryptorsi.sources.live import LiveSource

        knobs = _http_timeout()
        if spec.requests_in_flight is not None:
            knobs["requests_in_flight"] = spec.requests_in_flight
        return LiveSource(spec.exchange_url, exchange=spec.exchange, coingecko_url=spec.coingecko_url,
                          coingecko_api_key=coingecko_api_key or os.environ.get("COINGECKO_API_KEY"), **knobs)
    raise ValueError(f"source: unknown source {spec.name!r}")


def _http_timeout() -> dict:
    value = os.environ.get("CRYPTORSI_HTTP_TIMEOUT", "").strip()
    if not value:
        return {}
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 0.05 <= seconds <= 600:  # also rejects nan
        raise ValueError(f"CRYPTORSI_HTTP_TIMEOUT: must be seconds between 0.05 and 600, got {value!r}")
    return {"timeout": seconds}
