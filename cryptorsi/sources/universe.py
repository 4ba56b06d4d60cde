"""Which of the top coins are analysed, on which pair — the universe rules every source shares.

:func:`select_universe` walks the coins largest first and keeps those with an **active** spot market
``<SYMBOL>/<QUOTE>`` for the first quote of the preference list that trades. Coins are identified by
their CoinGecko id; the ticker is only used to find the pair. A coin is left out, with a one-line
reason, when:

* another coin earlier in the list (a larger market cap) already has its ticker — the exchange's pair
  belongs to the larger coin: ``"ticker XYZ already maps to <coin_id>"``;
* it is a stablecoin (``"stablecoin"``) or a wrapped, staked or bridged version of another coin
  (``"wrapped or staked token"``), unless ``include_stablecoins=True``. Their RSI either never moves
  (pegs) or copies the coin they wrap, which says nothing about the market. Gold tokens (PAX Gold,
  Tether Gold) are pegged to an asset too and count as stablecoins. The benchmark is never excluded
  by these rules;
* it has no active pair for any of the quotes: ``"no active USDC pair on binance"`` (the inactive pair
  is named when there is one). This applies to the benchmark too; the caller decides what to do.

Stablecoin and wrapped-token detection (any rule is enough):

1. CoinGecko ids in :data:`STABLECOIN_IDS` / :data:`WRAPPED_IDS`, or tickers in
   :data:`STABLECOIN_SYMBOLS` / :data:`WRAPPED_SYMBOLS`;
2. names: a word ``USD`` or the word ``stablecoin`` (stable); the words ``Wrapped``, ``Staked``,
   ``Restaked``, ``Bridged``, ``Liquid staked`` or ``-Peg`` anywhere in the name (wrapped);
3. tickers: ``USD`` followed by at most 3 letters/digits (USDT, USDE, USD1) or 1-4 letters followed by
   ``USD`` (FDUSD, PYUSD); ``W`` or ``ST`` + the ticker (3+ characters) of a larger coin of the list
   (WBTC when BTC is listed, STETH when ETH is).

>>> from cryptorsi.market import Coin, Market
>>> coins = [Coin("bitcoin", "BTC", "Bitcoin", 1e12, 1), Coin("tether", "USDT", "Tether", 1e11, 2),
...          Coin("wrapped-bitcoin", "WBTC", "Wrapped Bitcoin", 1e10, 3)]
>>> listings, excluded = select_universe(coins, [Market("BTC/USDC", "BTC", "USDC")], exchange="binance",
...                                      quotes=("USDC",))
>>> [x.pair for x in listings], [(x.coin.symbol, x.reason) for x in excluded]
(['BTC/USDC'], [('USDT', 'stablecoin'), ('WBTC', 'wrapped or staked token')])
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from cryptorsi.events import ExcludedCoin
from cryptorsi.market import Coin, Listing, Market

__all__ = [
    "select_universe",
    "stable_or_wrapped",
    "STABLECOIN_IDS",
    "STABLECOIN_SYMBOLS",
    "WRAPPED_IDS",
    "WRAPPED_SYMBOLS",
    "STABLECOIN",
    "WRAPPED",
]

STABLECOIN = "stablecoin"
WRAPPED = "wrapped or staked token"

#: CoinGecko ids of well-known stablecoins (fiat-, crypto- and gold-backed, and their savings versions).
STABLECOIN_IDS = frozenset({
    "tether", "usd-coin", "dai", "first-digital-usd", "true-usd", "paxos-standard", "binance-usd", "frax",
    "usds", "ethena-usde", "paypal-usd", "gemini-dollar", "usdd", "liquity-usd", "crvusd", "gho",
    "usd1-wlfi", "ripple-usd", "global-dollar", "euro-coin", "stasis-eurs", "tether-eurt", "nusd",
    "ethena-staked-usde", "savings-dai", "susds", "magic-internet-money", "dola-usd", "celo-dollar",
    "usdtb", "ondo-us-dollar-yield", "blackrock-usd-institutional-digital-liquidity-fund",
    "terrausd", "husd", "fei-usd", "alchemix-usd", "usdx-money-usdx", "falcon-finance", "resolv-usr",
    # gold-backed: pegged to an ounce of gold, treated like stablecoins
    "pax-gold", "tether-gold",
})
#: Tickers of well-known stablecoins (CoinGecko symbols, upper-case).
STABLECOIN_SYMBOLS = frozenset({
    "USDT", "USDC", "DAI", "FDUSD", "TUSD", "USDP", "BUSD", "FRAX", "USDS", "USDE", "PYUSD", "GUSD", "USDD",
    "LUSD", "CRVUSD", "GHO", "USD1", "RLUSD", "USDG", "EURC", "EURS", "EURT", "AEUR", "SUSD", "SUSDE",
    "SDAI", "SUSDS", "MIM", "DOLA", "USDY", "BUIDL", "USDTB", "USDF", "USR", "UST", "PAXG", "XAUT",
})
#: CoinGecko ids of well-known wrapped, staked (liquid staking) and bridged tokens.
WRAPPED_IDS = frozenset({
    "wrapped-bitcoin", "weth", "staked-ether", "wrapped-steth", "coinbase-wrapped-btc",
    "coinbase-wrapped-staked-eth", "rocket-pool-eth", "binance-staked-sol", "wrapped-beacon-eth",
    "wrapped-eeth", "ether-fi-staked-eth", "jito-staked-sol", "msol", "marinade-staked-sol",
    "lombard-staked-btc", "solv-btc", "mantle-staked-ether", "renzo-restaked-eth", "kelp-dao-restaked-eth",
    "wbnb", "wrapped-bnb", "binance-bitcoin", "bitcoin-avalanche-bridged-btc-b", "tbtc",
    "stakewise-v3-oseth", "frax-ether", "staked-frax-ether", "sweth", "stader-ethx", "wrapped-avax",
    "wrapped-solana", "wrapped-tron", "wrapped-fantom", "jupiter-staked-sol", "benqi-liquid-staked-avax",
    "l2-standard-bridged-weth-base", "arbitrum-bridged-weth-arbitrum-one", "binance-peg-weth",
    "bridged-usdc-polygon-pos-bridge", "wrapped-hype", "kinetic-staked-hype", "liquid-staked-ethereum",
})
#: Tickers of well-known wrapped, staked and bridged tokens.
WRAPPED_SYMBOLS = frozenset({
    "WBTC", "WETH", "STETH", "WSTETH", "CBBTC", "CBETH", "RETH", "BNSOL", "WBETH", "WEETH", "EETH", "JITOSOL",
    "MSOL", "LBTC", "SOLVBTC", "METH", "EZETH", "RSETH", "WBNB", "BTCB", "BTC.B", "TBTC", "OSETH", "SFRXETH",
    "FRXETH", "SWETH", "ETHX", "WAVAX", "WSOL", "WTRX", "WFTM", "JUPSOL", "SAVAX", "WHYPE", "KHYPE", "LSETH",
})

_STABLE_NAME = re.compile(r"\bUSD\b|\bstablecoin\b", re.IGNORECASE)
_WRAPPED_NAME = re.compile(r"\b(?:wrapped|staked|restaked|bridged)\b|^liquid staked|-peg\b", re.IGNORECASE)
_STABLE_SYMBOL = re.compile(r"^USD[A-Z0-9]{0,3}$|^[A-Z]{1,4}USD$")
_TWIN_PREFIXES = ("W", "ST")


def stable_or_wrapped(coin: Coin, larger_symbols: Iterable[str] = ()) -> str | None:
    """``"stablecoin"``, ``"wrapped or staked token"`` or ``None`` for ``coin``.

    ``larger_symbols`` are the tickers of the coins ranked above it (for the ``W``/``ST`` + ticker rule).
    """
    symbol, coin_id, name = coin.symbol.upper(), coin.coin_id.lower(), coin.name or ""
    if coin_id in STABLECOIN_IDS or symbol in STABLECOIN_SYMBOLS:
        return STABLECOIN
    if coin_id in WRAPPED_IDS or symbol in WRAPPED_SYMBOLS or _WRAPPED_NAME.search(name):
        return WRAPPED
    if _STABLE_NAME.search(name) or _STABLE_SYMBOL.match(symbol):
        return STABLECOIN
    larger = set(larger_symbols)
    for prefix in _TWIN_PREFIXES:
        base = symbol[len(prefix):]
        if symbol.startswith(prefix) and len(base) >= 3 and base in larger:
            return WRAPPED
    return None


def select_universe(
    coins: list[Coin],
    markets: list[Market],
    *,
    exchange: str,
    quotes: tuple[str, ...],
    benchmark: str = "BTC",
    include_stablecoins: bool = False,
) -> tuple[list[Listing], list[ExcludedCoin]]:
    """The listings to analyse (in the coins' order) and the coins left out, each with its reason.

    ``coins`` are CoinGecko's top coins, largest first; ``markets`` the exchange's spot markets;
    ``quotes`` the quote assets in order of preference (the first one with an active pair is used).
    """
    quotes = tuple(q.upper() for q in quotes)
    benchmark = benchmark.upper()
    active: dict[tuple[str, str], Market] = {}
    inactive: dict[tuple[str, str], Market] = {}
    for market in markets:
        key = (market.base.upper(), market.quote.upper())
        if market.active:
            active.setdefault(key, market)
        else:
            inactive.setdefault(key, market)

    listings: list[Listing] = []
    excluded: list[ExcludedCoin] = []
    owner: dict[str, str] = {}  # ticker -> coin_id of the largest coin with that ticker
    seen_ids: set[str] = set()
    for coin in coins:
        symbol = coin.symbol.upper()
        if coin.coin_id in seen_ids:
            excluded.append(ExcludedCoin(coin, f"duplicate of coin id {coin.coin_id}"))
            continue
        seen_ids.add(coin.coin_id)
        if symbol in owner:
            excluded.append(ExcludedCoin(coin, f"ticker {symbol} already maps to {owner[symbol]}"))
            continue
        kind = None if include_stablecoins or symbol == benchmark else stable_or_wrapped(coin, owner)
        owner[symbol] = coin.coin_id  # the ticker is this coin's even if it is left out below
        if kind is not None:
            excluded.append(ExcludedCoin(coin, kind))
            continue
        market = next((active[(symbol, q)] for q in quotes if (symbol, q) in active), None)
        if market is None:
            excluded.append(ExcludedCoin(coin, _no_pair_reason(symbol, quotes, exchange, inactive)))
            continue
        listings.append(Listing(coin=coin, exchange=exchange, pair=market.pair, quote=market.quote.upper()))
    return listings, excluded


def _no_pair_reason(symbol: str, quotes: tuple[str, ...], exchange: str, inactive: dict) -> str:
    reason = f"no active {' or '.join(quotes)} pair on {exchange}"
    halted = [inactive[(symbol, q)].pair for q in quotes if (symbol, q) in inactive]
    if halted:
        reason += f" ({', '.join(halted)} {'is' if len(halted) == 1 else 'are'} inactive)"
    return reason
