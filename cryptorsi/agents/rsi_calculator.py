"""``RSICalculator``: CPU work — the RSI of one coin on one timeframe per ``CalculateRSIRequested``."""

from __future__ import annotations

from cryptorsi.events import CalculateRSIRequested, CoinProcessingFailed, RSICalculated
from cryptorsi.runtime.worker import QueueWorkerThread

__all__ = ["RSICalculator"]


class RSICalculator(QueueWorkerThread):
    """Publishes ``RSICalculated`` (the RSI without its warm-up NaNs) or ``CoinProcessingFailed``."""

    def __init__(self, bus, *, threads: int = 1, session_id: str | None = None):
        super().__init__(bus, name="RSICalculator", threads=threads, session_id=session_id)

    def subscribe(self) -> None:
        self.listen(CalculateRSIRequested, lambda e: self.submit(self._calculate, e, on_error=self._failed(e)))

    def _calculate(self, event: CalculateRSIRequested) -> None:
        if self.session_id is not None and event.session_id != self.session_id:
            return
        from cryptorsi.indicators import rsi

        values = rsi(event.close, period=event.period, method=event.method).dropna()
        if values.empty:
            self._failed(event)(ValueError(
                f"too few candles for RSI({event.period}): {event.close.count()} candles"))
            return
        values.name = "rsi"
        self.publish(RSICalculated(event.session_id, event.listing, event.timeframe, values, event.period,
                                   event.method))

    def _failed(self, event: CalculateRSIRequested):
        def publish_failure(exc: BaseException) -> None:
            self.publish(CoinProcessingFailed(event.session_id, event.listing, event.timeframe, "rsi", str(exc)))
        return publish_failure
