"""rebase_api_urls: every REST base of a ccxt exchange moved to one root, paths kept, templates resolved."""

from __future__ import annotations

import ccxt
import pytest

from cryptorsi.sources.exchange_urls import rebase_api_urls

ROOT = "http://127.0.0.1:8080"


def bases(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from bases(v)
    elif isinstance(value, str):
        yield value


@pytest.mark.parametrize("name, key, expected", [
    ("okx", "rest", ROOT),                            # 'https://{hostname}'
    ("bybit", "public", ROOT),                        # 'https://api.{hostname}'
    ("binanceus", "public", ROOT + "/api/v3"),        # 'https://api.binance.us/api/v3'
    ("binance", "public", ROOT + "/api/v3"),
])
def test_every_base_moves_to_the_root_and_keeps_its_path(name, key, expected):
    ex = getattr(ccxt, name)()
    before = dict(ex.urls["api"])
    assert rebase_api_urls(ex, ROOT + "/") is ex
    assert ex.urls["api"][key] == expected
    assert all(url.startswith(ROOT) and "{" not in url for url in bases(ex.urls["api"]))
    assert ex.urls["api"].keys() == before.keys()


def test_a_root_with_a_path_or_no_scheme_is_refused():
    for bad in ("127.0.0.1:8080", ROOT + "/api/v3", "ftp://host"):
        with pytest.raises(ValueError):
            rebase_api_urls(ccxt.okx(), bad)
