"""Point a ccxt exchange at another root URL (a mirror, a regional host, or the project's local test server).

ccxt keeps each exchange's REST bases in ``exchange.urls['api']``, in shapes that differ by exchange: Binance has
one full base per API family (``'public': 'https://api.binance.com/api/v3'``), OKX one template
(``'rest': 'https://{hostname}'``), Bybit several (``'public': 'https://api.{hostname}'``). Rewriting only the
scheme and host of every base, and keeping its path, works for all of them:

>>> import ccxt
>>> okx = rebase_api_urls(ccxt.okx(), "http://127.0.0.1:8080")
>>> okx.urls["api"]["rest"]
'http://127.0.0.1:8080'
>>> rebase_api_urls(ccxt.binanceus(), "http://127.0.0.1:8080").urls["api"]["public"]
'http://127.0.0.1:8080/api/v3'
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

__all__ = ["rebase_api_urls"]


def rebase_api_urls(exchange: Any, root_url: str) -> Any:
    """Rewrite every REST base of ``exchange.urls['api']`` to ``root_url`` (``scheme://host[:port]``), keeping
    each base's path, and return the exchange.

    ``{hostname}`` templates are resolved first (with the exchange's own ``hostname``), so the result holds plain
    URLs and no later change of ``hostname`` moves the client back. Nested mappings are rewritten too; values that
    are not ``http(s)`` URLs (websocket bases live elsewhere, under ``urls['api']['ws']`` on some exchanges) are left
    as they are.
    """
    root = root_url.rstrip("/")
    split = urlsplit(root)
    if split.scheme not in ("http", "https") or not split.netloc or split.path:
        raise ValueError(f"root_url must be scheme://host[:port], got {root_url!r}")
    exchange.urls["api"] = _rebased(exchange.urls["api"], root, getattr(exchange, "hostname", None) or "")
    return exchange


def _rebased(value: Any, root: str, hostname: str) -> Any:
    if isinstance(value, dict):
        return {k: _rebased(v, root, hostname) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    url = value.replace("{hostname}", hostname)
    split = urlsplit(url)
    if split.scheme not in ("http", "https"):
        return value
    return root + split.path.rstrip("/")
