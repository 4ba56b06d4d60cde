"""``RSICalculator``: CPU work — the RSI of one coin on one timeframe per ``CalculateRSIRequested``.

Stateless: it serves every analysis on its bus (each request carries the period and method).
"""

from __future__ import annotations

from cryptorsi.events import CalculateRSIRequested, CoinProcessingFailed, RSICalculated
from cryptorsi.runtime.worker import QueueWorkerThread

__all__ = ["RSICalculator"]


class RSICalculator(QueueWorkerThread):
    """Publishes ``RSICalculated`` (the RSI without its warm-up NaNs) or ``CoinProcessingFailed``."""

    def __init__(self, bus, *, threads: int = 1):
        super().__init__(bus, name="RSICalculator", threads=threads)

    def subscribe(self) -> None:
        self.serve(CalculateRSIRequested, self._calculate, self._failed)

    def _calculate(self, event: CalculateRSIRequested) -> None:
        from cryptorsi.indicators import no_rsi_reason, rsi

        values = rsi(event.close, period=event.period, method=event.method).dropna()
        if values.empty:  # an expected outcome, not an error: no traceback in the log
            self._failed(event, ValueError(no_rsi_reason(event.period, event.close.count())))
            return
        values.name = "rsi"
        self.publish(RSICalculated(event.session_id, event.listing, event.timeframe, values, event.period,
                                   event.method))

    def _failed(self, event: CalculateRSIRequested, exc: BaseException) -> None:
        self.publish(CoinProcessingFailed(event.session_id, event.listing, event.timeframe, "rsi", str(exc)))
