"""Benchmark: a cold live run of cryptorsi against the original design's sequential ccxt loop, on the same server.

    python bench/bench_live.py [--coins 55] [--timeframes 1h,4h,1d] [--weeks 50] [--latency-ms 150,30]
                               [--requests-in-flight 8] [--ohlcv-parser numpy|ccxt] [--skip-loop]

The project's own exchange server (:mod:`cryptorsi.testing.exchange_server`) runs in a subprocess (so that its
CPU is not taken from the client's interpreter), serving the bundled synthetic sample market over HTTP in the
wire formats of Binance spot and CoinGecko, with ``--latency-ms`` added to every answer (150 ms: a notebook a
continent away from the exchange; each figure of the list is one measurement), Binance's request-weight budget
(6,000 a minute, 429 + Retry-After beyond it, 418 for a client that keeps calling) and an ``exchangeInfo`` as
long as Binance's (``--other-symbols``). ``--top`` is chosen so that ``--coins`` coins have a trading USDC pair
(stablecoins, wrapped tokens and coins without a pair are left out, as cryptorsi does).

1. ``cryptorsi (cold)``: ``run_analysis(source="live")`` on a new database — the whole analysis: CoinGecko's top
   coins, Binance's markets, every candle (``--requests-in-flight`` at once within one weight budget), RSI,
   correlations, all saved.
2. ``cryptorsi (warm)``: the same again on the same database (only what is missing is asked for).
3. ``sequential ccxt loop``: the original design — one ccxt instance with ``enableRateLimit=True``, coin after coin,
   ``fetch_ohlcv`` paged 1000 candles at a time from the window start, for the same pairs, timeframes and windows
   (only the download: no RSI, nothing stored).

Prints, per latency, the times, the ratios (targets at 150 ms: cold run >= 8x faster than the loop; warm run
>= 5x faster than the cold one), the requests made and the 429/418 answers (target: zero).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MARKET_WEEKS_MARGIN = 2  # the server holds a little more history than the window


# ----------------------------------------------------------------------------------------------- server process
def serve(args) -> None:
    """Runs in the subprocess: build the market, encode every row once, serve; commands on stdin."""
    from cryptorsi.testing.exchange_server import ExchangeServer, Faults, sample_market

    timeframes = args.timeframes.split(",")
    market = sample_market(args.top, intervals=timeframes, weeks=args.weeks + MARKET_WEEKS_MARGIN, quotes=("USDC",),
                           other_symbols=args.other_symbols)
    for symbol in market.symbols:  # encode the wire rows now, not during the timed runs
        for tf in timeframes:
            market.kline_rows(symbol["symbol"], tf, 0, None, 1, market.now())
    server = ExchangeServer(market=market, faults=Faults(latency_s=args.latency_ms / 1000)).start()
    print(server.url, flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "stats":
            print(json.dumps({"requests": len(server.requests()), "klines": server.count("klines"),
                              "n429": server.n429, "n418": server.n418}), flush=True)
        elif command == "reset":
            server.reset_records()
            server.reset_budget()
            print("{}", flush=True)
    server.stop()


class ServerProcess:
    def __init__(self, top: int, timeframes: str, weeks: float, latency: float, other_symbols: int):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--top", str(top), "--timeframes", timeframes, "--weeks", str(weeks),
             "--latency-ms", str(latency * 1000), "--other-symbols", str(other_symbols)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError("the server process did not start")
        self._lock = threading.Lock()

    def command(self, text: str) -> dict:
        with self._lock:
            self.proc.stdin.write(text + "\n")
            self.proc.stdin.flush()
            return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


# ----------------------------------------------------------------------------------------------- the original loop
def sequential_loop(url: str, pairs: list[str], timeframes: list[str], windows: dict) -> int:
    """The original design's download: one ccxt instance, its own rate limiter, coin after coin, paged."""
    import ccxt
    from pycoingecko import CoinGeckoAPI

    from cryptorsi.market import timeframe_ms

    cg = CoinGeckoAPI()
    cg.api_base_url = url + "/api/v3/"
    cg.get_coins_markets(vs_currency="usd", order="market_cap_desc", per_page=250, page=1)
    exchange = ccxt.binance({"enableRateLimit": True,
                             "options": {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]},
                                         "fetchCurrencies": False}})
    for key, value in list(exchange.urls["api"].items()):
        if isinstance(value, str):
            exchange.urls["api"][key] = value.replace("https://api.binance.com", url)
    exchange.load_markets()
    candles = 0
    for pair in pairs:
        for tf in timeframes:
            start, end = windows[tf]
            step = timeframe_ms(tf)
            since = start
            while since < end:
                rows = exchange.fetch_ohlcv(pair, tf, since, 1000)
                rows = [r for r in rows if r[0] < end]
                candles += len(rows)
                if len(rows) < 1000:
                    break
                since = rows[-1][0] + step
    return candles


# ----------------------------------------------------------------------------------------------- main
def choose_top(coins: int) -> int:
    """The smallest top N whose universe (USDC pairs, no stablecoins or wrapped tokens) has ``coins`` coins."""
    from cryptorsi.sources.sample import SampleSource
    from cryptorsi.sources.universe import select_universe

    source = SampleSource()
    markets = source.markets()
    for top in range(coins, 260):
        listings, _ = select_universe(source.top_coins(top), markets, exchange="binance", quotes=("USDC",))
        if len(listings) >= coins:
            return top
    return 260


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coins", type=int, default=55, help="tradable coins (default 55)")
    parser.add_argument("--top", type=int, default=None, help="top N coins (default: chosen from --coins)")
    parser.add_argument("--timeframes", default="1h,4h,1d")
    parser.add_argument("--weeks", type=float, default=50)
    parser.add_argument("--latency-ms", default="150,30",
                        help="milliseconds added to every answer, one measurement per value (default 150,30)")
    parser.add_argument("--requests-in-flight", type=int, default=None,
                        help="cryptorsi's requests in flight (default: its own default)")
    parser.add_argument("--ohlcv-parser", choices=("numpy", "ccxt"), default="numpy",
                        help="how cryptorsi reads klines pages (default numpy: publicGetKlines + one conversion)")
    parser.add_argument("--other-symbols", type=int, default=3000,
                        help="other pairs in exchangeInfo, as Binance lists ~3,000 (default 3000)")
    parser.add_argument("--skip-loop", action="store_true", help="do not run the sequential loop")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        args.latency_ms = float(args.latency_ms)
        serve(args)
        return

    import ccxt  # noqa: F401  (both contenders use these libraries: neither run is timed importing them)
    import pycoingecko  # noqa: F401

    import cryptorsi as cr
    from cryptorsi.sources.live import LiveSource

    # a LiveSource knob, not a config field: set as the default of the sources this process makes
    LiveSource.__init__.__kwdefaults__["ohlcv_parser"] = args.ohlcv_parser
    top = args.top or choose_top(args.coins)
    for latency_ms in (float(x) for x in args.latency_ms.split(",")):
        measure(args, top, latency_ms / 1000, cr)


def measure(args, top: int, latency: float, cr) -> None:
    t0 = time.perf_counter()
    server = ServerProcess(top, args.timeframes, args.weeks, latency, args.other_symbols)
    print(f"server {server.url}: top {top} coins, {args.timeframes}, {args.weeks:g} weeks, "
          f"{args.other_symbols} other symbols, {latency * 1000:.0f} ms latency "
          f"(ready in {time.perf_counter() - t0:.1f} s); klines read by {args.ohlcv_parser}, "
          f"{args.requests_in_flight or 'default'} requests in flight")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = cr.AnalysisConfig(source="live", binance_url=server.url, coingecko_url=server.url,
                                       top_n_coins=top, timeframes=args.timeframes, weeks=args.weeks,
                                       requests_in_flight=args.requests_in_flight,
                                       db_path=str(Path(tmp) / "bench.db"))
            timings = {}
            for label in ("cryptorsi (cold)", "cryptorsi (warm)"):
                server.command("reset")
                start, cpu = time.perf_counter(), time.process_time()
                result = cr.run_analysis(config, progress=False, stream=io.StringIO())
                timings[label] = time.perf_counter() - start
                cpu = time.process_time() - cpu
                stats = server.command("stats")
                print(f"  {label:<24} {timings[label]:8.2f} s ({cpu:5.1f} s CPU)   "
                      f"{stats['klines']:5d} klines requests, {stats['requests']:5d} in all, {stats['n429']} x 429, {stats['n418']} x 418   "
                      f"({len(result.correlations)} correlations, {len(result.failures)} failures)")
            store = cr.Store(config.db_path)
            coins = store.coins(result.session_id)
            pairs = [p for p in coins["pair"].dropna()]
            windows = store.sessions().iloc[-1]["config"]["windows"]
            print(f"  {len(pairs)} pairs analysed x {len(config.timeframes)} timeframes")
            cold, warm = timings["cryptorsi (cold)"], timings["cryptorsi (warm)"]
            if not args.skip_loop:
                server.command("reset")
                start, cpu = time.perf_counter(), time.process_time()
                sequential_loop(server.url, pairs, list(config.timeframes), windows)
                loop = time.perf_counter() - start
                cpu = time.process_time() - cpu
                stats = server.command("stats")
                print(f"  {'sequential ccxt loop':<24} {loop:8.2f} s ({cpu:5.1f} s CPU)   "
                      f"{stats['klines']:5d} klines requests, {stats['requests']:5d} in all, {stats['n429']} x 429, {stats['n418']} x 418")
                print(f"  {latency * 1000:.0f} ms: cold run {loop / cold:.1f}x faster than the sequential loop "
                      f"(target >= 8x at 150 ms); warm run {cold / warm:.1f}x faster than the cold one (target >= 5x)")
            else:
                print(f"  {latency * 1000:.0f} ms: warm run {cold / warm:.1f}x faster than the cold one")
    finally:
        server.close()


if __name__ == "__main__":
    main()
