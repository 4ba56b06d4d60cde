"""cryptorsi — which coins, especially low market-cap ones, have an RSI that moves with Bitcoin's?

>>> import cryptorsi as cr
>>> result = cr.run_analysis(source="sample", top_n_coins=40, timeframes="1h,4h,1d")  # doctest: +SKIP
>>> result.selected                                                                  # doctest: +SKIP

The public interface: ``AnalysisConfig``, ``run_analysis``, ``Runner``, ``stop_all``, ``AnalysisResult``,
``Store`` and ``cryptorsi.indicators``. Everything runs offline on the synthetic ``sample`` source.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

# The public names are imported on first use (PEP 562), as scipy and scikit-image do (Scientific Python SPEC 1):
# ``import cryptorsi`` is instant; pandas, numpy and the rest come in with the first public name used.
_PUBLIC = {
    "AnalysisConfig": "cryptorsi.config",
    "AnalysisResult": "cryptorsi.result",
    "ConfigError": "cryptorsi.errors",
    "CryptoRSIError": "cryptorsi.errors",
    "DatabaseError": "cryptorsi.errors",
    "RunFailed": "cryptorsi.errors",
    "RunInterrupted": "cryptorsi.errors",
    "Runner": "cryptorsi.runner",
    "SourceError": "cryptorsi.errors",
    "Store": "cryptorsi.storage.store",
    "indicators": None,  # a submodule
    "run_analysis": "cryptorsi.runner",
    "stop_all": "cryptorsi.runner",
    "ui": "cryptorsi.notebook",
}
__all__ = [  # a literal list, so linters see the names below used
    "AnalysisConfig", "AnalysisResult", "ConfigError", "CryptoRSIError", "DatabaseError", "RunFailed", "RunInterrupted",
    "Runner", "SourceError", "Store", "indicators", "run_analysis", "stop_all", "ui",
]

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:  # what type checkers and IDEs see
    from cryptorsi import indicators
    from cryptorsi.config import AnalysisConfig
    from cryptorsi.errors import ConfigError, CryptoRSIError, DatabaseError, RunFailed, RunInterrupted, SourceError
    from cryptorsi.notebook import ui
    from cryptorsi.result import AnalysisResult
    from cryptorsi.runner import Runner, run_analysis, stop_all
    from cryptorsi.storage.store import Store


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'cryptorsi' has no attribute {name!r}")
    module = _PUBLIC[name]
    value = (importlib.import_module(f"cryptorsi.{name}") if module is None
             else getattr(importlib.import_module(module), name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
