"""Persistence: one SQLite file (WAL) holding every analysis session and the candle cache they share.

* :func:`open_database` and :class:`SessionWriter` — the write side, used on the DatabaseManager's thread;
* :class:`CandleCache` — reads cached candles (one per thread);
* :class:`Store` — queries past analyses, read-only, from any thread.

See :mod:`cryptorsi.storage.schema` for the tables.
"""

from __future__ import annotations

from cryptorsi.storage.database import CandleCache, SessionWriter, open_database
from cryptorsi.storage.schema import SCHEMA_VERSION
from cryptorsi.storage.store import NotFound, Store

__all__ = ["open_database", "SessionWriter", "CandleCache", "Store", "NotFound", "SCHEMA_VERSION"]
