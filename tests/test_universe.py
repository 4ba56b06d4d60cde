"""Universe rules: pairs by CoinGecko id, stablecoins and wrapped tokens, ticker collisions, missing pairs."""

from __future__ import annotations

import pytest

from cryptorsi.events import ExcludedCoin
from cryptorsi.market import Coin, Listing, Market
from cryptorsi.sources.universe import STABLECOIN, WRAPPED, select_universe, stable_or_wrapped


def coin(coin_id, symbol, name, cap, rank):
    return Coin(coin_id, symbol, name, float(cap), rank)


# The shape of CoinGecko's /coins/markets answer, largest first (symbols upper-cased as Coin expects).
TOP = [
    coin("bitcoin", "BTC", "Bitcoin", 1.9e12, 1),
    coin("ethereum", "ETH", "Ethereum", 4.1e11, 2),
    coin("tether", "USDT", "Tether", 1.8e11, 3),
    coin("ripple", "XRP", "XRP", 1.3e11, 4),
    coin("binancecoin", "BNB", "BNB", 1.2e11, 5),
    coin("solana", "SOL", "Solana", 1.0e11, 6),
    coin("usd-coin", "USDC", "USDC", 7.4e10, 7),
    coin("staked-ether", "STETH", "Lido Staked Ether", 3.3e10, 8),
    coin("tron", "TRX", "TRON", 2.6e10, 9),
    coin("dogecoin", "DOGE", "Dogecoin", 2.4e10, 10),
    coin("wrapped-steth", "WSTETH", "Wrapped stETH", 1.6e10, 11),
    coin("wrapped-bitcoin", "WBTC", "Wrapped Bitcoin", 1.4e10, 12),
    coin("weth", "WETH", "WETH", 1.1e10, 13),
    coin("the-open-network", "TON", "Toncoin", 7.0e9, 14),
    coin("pi-network", "PI", "Pi Network", 5.5e9, 15),
    coin("ethena-usde", "USDE", "Ethena USDe", 5.0e9, 16),
    coin("coinbase-wrapped-btc", "CBBTC", "Coinbase Wrapped BTC", 4.0e9, 17),
    coin("first-digital-usd", "FDUSD", "First Digital USD", 1.5e9, 18),
    coin("pax-gold", "PAXG", "PAX Gold", 1.1e9, 19),
    coin("tontoken", "TON", "TON Token", 2.0e6, 20),
]

MARKETS = [
    Market("BTC/USDC", "BTC", "USDC"), Market("BTC/USDT", "BTC", "USDT"),
    Market("ETH/USDC", "ETH", "USDC"), Market("ETH/USDT", "ETH", "USDT"),
    Market("XRP/USDC", "XRP", "USDC"), Market("XRP/USDT", "XRP", "USDT"),
    Market("BNB/USDC", "BNB", "USDC"), Market("BNB/USDT", "BNB", "USDT"),
    Market("SOL/USDC", "SOL", "USDC"), Market("SOL/USDT", "SOL", "USDT"),
    Market("USDC/USDT", "USDC", "USDT"),
    Market("TRX/USDT", "TRX", "USDT"),  # no USDC pair
    Market("DOGE/USDC", "DOGE", "USDC", active=False), Market("DOGE/USDT", "DOGE", "USDT"),
    Market("WBTC/USDC", "WBTC", "USDC"), Market("WBTC/USDT", "WBTC", "USDT"),
    Market("TON/USDC", "TON", "USDC"), Market("TON/USDT", "TON", "USDT"),
    Market("FDUSD/USDC", "FDUSD", "USDC"), Market("FDUSD/USDT", "FDUSD", "USDT"),
    Market("PAXG/USDC", "PAXG", "USDC"), Market("PAXG/USDT", "PAXG", "USDT"),
    Market("CBBTC/USDC", "CBBTC", "USDC"),
]


def run(coins=TOP, markets=MARKETS, **kwargs):
    kwargs = {"exchange": "binance", "quotes": ("USDC",), **kwargs}
    listings, excluded = select_universe(coins, markets, **kwargs)
    return listings, excluded, {x.coin.coin_id: x.reason for x in excluded}


def test_keeps_coins_with_an_active_pair_in_order():
    listings, excluded, _ = run()
    assert all(isinstance(x, Listing) for x in listings) and all(isinstance(x, ExcludedCoin) for x in excluded)
    assert [x.coin_id for x in listings] == ["bitcoin", "ethereum", "ripple", "binancecoin", "solana",
                                             "the-open-network"]
    btc = listings[0]
    assert (btc.exchange, btc.pair, btc.quote, btc.symbol) == ("binance", "BTC/USDC", "USDC", "BTC")
    assert btc.coin is TOP[0]
    assert len(listings) + len(excluded) == len(TOP)
    # Excluded coins come in the coins' order too.
    order = [c.coin_id for c in TOP]
    assert [order.index(x.coin.coin_id) for x in excluded] == sorted(order.index(x.coin.coin_id) for x in excluded)


def test_reasons_are_one_line_each():
    _, excluded, reasons = run()
    assert reasons == {
        "tether": "stablecoin",
        "usd-coin": "stablecoin",
        "staked-ether": "wrapped or staked token",
        "tron": "no active USDC pair on binance",
        "dogecoin": "no active USDC pair on binance (DOGE/USDC is inactive)",
        "wrapped-steth": "wrapped or staked token",
        "wrapped-bitcoin": "wrapped or staked token",
        "weth": "wrapped or staked token",
        "pi-network": "no active USDC pair on binance",
        "ethena-usde": "stablecoin",
        "coinbase-wrapped-btc": "wrapped or staked token",
        "first-digital-usd": "stablecoin",
        "pax-gold": "stablecoin",
        "tontoken": "ticker TON already maps to the-open-network",
    }
    assert all("\n" not in x.reason for x in excluded)


def test_quote_preference_uses_the_first_quote_that_trades():
    listings, _, reasons = run(quotes=("USDC", "USDT"))
    by_id = {x.coin_id: x for x in listings}
    assert (by_id["tron"].pair, by_id["tron"].quote) == ("TRX/USDT", "USDT")
    assert (by_id["dogecoin"].pair, by_id["dogecoin"].quote) == ("DOGE/USDT", "USDT")  # DOGE/USDC is halted
    assert by_id["bitcoin"].pair == "BTC/USDC"
    assert reasons["pi-network"] == "no active USDC or USDT pair on binance"
    listings, _, _ = run(quotes=("USDT", "USDC"))
    assert {x.quote for x in listings} == {"USDT"}


def test_include_stablecoins_keeps_them_when_they_trade():
    listings, _, reasons = run(quotes=("USDC", "USDT"), include_stablecoins=True)
    by_id = {x.coin_id: x for x in listings}
    assert by_id["usd-coin"].pair == "USDC/USDT"
    assert by_id["wrapped-bitcoin"].pair == "WBTC/USDC"
    assert {"first-digital-usd", "pax-gold", "coinbase-wrapped-btc"} <= set(by_id)
    assert reasons["tether"] == "no active USDC or USDT pair on binance"
    assert reasons["staked-ether"] == "no active USDC or USDT pair on binance"


def test_ticker_collision_maps_by_coingecko_id():
    listings, _, reasons = run()
    ton = [x for x in listings if x.symbol == "TON"]
    assert len(ton) == 1 and ton[0].coin_id == "the-open-network" and ton[0].pair == "TON/USDC"
    assert reasons["tontoken"] == "ticker TON already maps to the-open-network"
    # The larger coin keeps its ticker even when it is left out itself.
    coins = [TOP[0], coin("tether", "USDT", "Tether", 1e11, 2), coin("usdt-meme", "USDT", "USDT Meme", 1e6, 3)]
    markets = [Market("BTC/USDC", "BTC", "USDC"), Market("USDT/USDC", "USDT", "USDC")]
    listings, _, reasons = run(coins, markets)
    assert [x.coin_id for x in listings] == ["bitcoin"]
    assert reasons == {"tether": "stablecoin", "usdt-meme": "ticker USDT already maps to tether"}


def test_the_benchmark_is_never_a_stablecoin_but_needs_a_pair():
    coins = [coin("wrapped-bitcoin", "WBTC", "Wrapped Bitcoin", 1e10, 1), coin("bitcoin", "BTC", "Bitcoin", 1e9, 2)]
    markets = [Market("WBTC/USDC", "WBTC", "USDC")]
    listings, _, reasons = run(coins, markets, benchmark="WBTC")
    assert [x.coin_id for x in listings] == ["wrapped-bitcoin"]
    assert reasons == {"bitcoin": "no active USDC pair on binance"}

    listings, excluded, reasons = run(TOP, [m for m in MARKETS if m.base != "BTC"])
    assert "bitcoin" not in {x.coin_id for x in listings}
    assert reasons["bitcoin"] == "no active USDC pair on binance"
    assert excluded[0].coin.coin_id == "bitcoin"


def test_edge_cases():
    assert select_universe([], MARKETS, exchange="binance", quotes=("USDC",)) == ([], [])
    listings, excluded, _ = run(TOP, [])
    assert listings == [] and len(excluded) == len(TOP)
    twice = [TOP[0], TOP[1], TOP[1]]
    listings, excluded, _ = run(twice)
    assert [x.coin_id for x in listings] == ["bitcoin", "ethereum"]
    assert [x.reason for x in excluded] == ["duplicate of coin id ethereum"]
    # Lower-case tickers and quotes (as some APIs give them) still match.
    lower = [Coin("bitcoin", "btc", "Bitcoin", 1e12, 1)]
    listings, _, _ = run(lower, [Market("BTC/USDC", "BTC", "USDC")], quotes=("usdc",))
    assert [(x.pair, x.quote) for x in listings] == [("BTC/USDC", "USDC")]


@pytest.mark.parametrize(
    "coin_id, symbol, name, expected",
    [
        ("tether", "USDT", "Tether", STABLECOIN),
        ("usds", "USDS", "USDS", STABLECOIN),
        ("paypal-usd", "PYUSD", "PayPal USD", STABLECOIN),
        ("gemini-dollar", "GUSD", "Gemini Dollar", STABLECOIN),
        ("tether-gold", "XAUT", "Tether Gold", STABLECOIN),
        ("some-new-usd", "NUSDX", "Some New USD", STABLECOIN),  # name pattern
        ("usd-something", "USDZ", "Zeta", STABLECOIN),  # ticker pattern
        ("acme-dollar", "ACD", "Acme Dollar Stablecoin", STABLECOIN),
        ("rocket-pool-eth", "RETH", "Rocket Pool ETH", WRAPPED),  # id / ticker only
        ("binance-staked-sol", "BNSOL", "Binance Staked SOL", WRAPPED),
        ("bridged-thing", "BTHG", "Bridged Thing (Base)", WRAPPED),
        ("binance-peg-dogecoin", "DOGE", "Binance-Peg Dogecoin", WRAPPED),
        ("liquid-staked-x", "LSX", "Liquid staked X", WRAPPED),
        ("bitcoin", "BTC", "Bitcoin", None),
        ("dogwifcoin", "WIF", "dogwifhat", None),
        ("usual", "USUAL", "Usual", None),
        ("pi-network", "PI", "Pi Network", None),
        ("worldcoin-wld", "WLD", "Worldcoin", None),
    ],
)
def test_stable_or_wrapped(coin_id, symbol, name, expected):
    assert stable_or_wrapped(Coin(coin_id, symbol, name), {"BTC", "ETH", "LD", "IF"}) == expected


def test_w_or_st_plus_a_larger_ticker_is_a_twin():
    coins = [
        coin("bitcoin", "BTC", "Bitcoin", 1e12, 1),
        coin("acme", "ACME", "Acme", 1e9, 2),
        coin("wacme", "WACME", "Acme on Chain X", 1e8, 3),  # W + a larger coin's ticker
        coin("stacme", "STACME", "Acme Yield", 5e7, 4),  # ST + a larger coin's ticker
        coin("waves-like", "WAVES", "Waves", 4e7, 5),  # W + AVES, but AVES is smaller: not a twin
        coin("aves", "AVES", "Aves", 1e6, 6),
    ]
    markets = [Market(f"{c.symbol}/USDC", c.symbol, "USDC") for c in coins]
    listings, _, reasons = run(coins, markets)
    assert reasons == {"wacme": WRAPPED, "stacme": WRAPPED}
    assert [x.symbol for x in listings] == ["BTC", "ACME", "WAVES", "AVES"]
