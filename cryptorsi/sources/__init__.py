"""Market data sources: ``sample`` (synthetic, offline), ``live`` (CoinGecko + Binance), ``cache`` (the database).

>>> from cryptorsi.config import AnalysisConfig
>>> make_source(AnalysisConfig(source="sample")).synthetic
True
"""

from __future__ import annotations

from cryptorsi.sources.base import MarketSource

__all__ = ["MarketSource", "make_source"]


def make_source(config) -> MarketSource:
    """The source ``config.source`` names, configured from ``config`` (imported lazily: ccxt is slow to import)."""
    if config.source == "sample":
        from cryptorsi.sources.sample import SampleSource

        return SampleSource()
    if config.source == "cache":
        from cryptorsi.sources.cache import CacheSource

        return CacheSource(config.db_path)
    if config.source == "live":
        from cryptorsi.sources.live import LiveSource

        return LiveSource(
            binance_url=config.binance_url,
            coingecko_url=config.coingecko_url,
            coingecko_api_key=config.coingecko_api_key,
        )
    raise ValueError(f"source: unknown source {config.source!r}")
