"""cryptorsi — which coins, especially low market-cap ones, have an RSI that moves with Bitcoin's?

>>> import cryptorsi as cr
>>> result = cr.run_analysis(source="sample", top_n_coins=40, timeframes="1h,4h,1d")  # doctest: +SKIP
>>> result.selected                                                                  # doctest: +SKIP

The public interface: ``AnalysisConfig``, ``run_analysis``, ``Runner``, ``stop_all``, ``AnalysisResult``,
``Store`` and ``cryptorsi.indicators``. Everything runs offline on the synthetic ``sample`` source.
"""

from __future__ import annotations

import logging

from cryptorsi._gc import gc_paused

with gc_paused():  # pandas and numpy come in here
    from cryptorsi import indicators
    from cryptorsi.config import AnalysisConfig
    from cryptorsi.errors import ConfigError, CryptoRSIError, DatabaseError, RunFailed, RunInterrupted, SourceError
    from cryptorsi.notebook import ui
    from cryptorsi.result import AnalysisResult
    from cryptorsi.runner import Runner, run_analysis, stop_all
    from cryptorsi.storage.store import Store

__all__ = [
    "AnalysisConfig",
    "AnalysisResult",
    "ConfigError",
    "CryptoRSIError",
    "DatabaseError",
    "RunFailed",
    "RunInterrupted",
    "Runner",
    "SourceError",
    "Store",
    "indicators",
    "run_analysis",
    "stop_all",
    "ui",
]

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
