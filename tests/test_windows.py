import numpy as np
import pandas as pd
import pytest

from cryptorsi.windows import analysis_window, grid_floor, missing_spans

H = 3_600_000


def ms(text):
    return int(pd.Timestamp(text, tz="UTC").value // 1_000_000)


def test_grid_floor_matches_binance_candle_opens():
    assert grid_floor(ms("2025-06-05 13:27"), "4h") == ms("2025-06-05 12:00")
    assert grid_floor(ms("2025-06-05 13:27"), "1d") == ms("2025-06-05")
    assert grid_floor(ms("2025-06-05 13:27"), "1w") == ms("2025-06-02")  # a Monday
    assert pd.Timestamp(grid_floor(ms("2025-06-02"), "1w"), unit="ms").day_name() == "Monday"


def test_window_counts_whole_candles_and_leaves_out_the_open_one():
    start, end = analysis_window(ms("2025-06-05 13:27"), 50, "1h")
    assert end == ms("2025-06-05 13:00")
    assert (end - start) // H == 50 * 7 * 24
    start, end = analysis_window(ms("2025-06-05"), 1, "4h")
    assert end - start == 42 * 4 * H


def test_missing_spans():
    grid = np.arange(10, 20) * H
    assert missing_spans(np.array([], dtype=np.int64), 0, 30 * H, "1h") == [(0, 30 * H)]
    assert missing_spans(grid, 10 * H, 20 * H, "1h") == []
    assert missing_spans(grid, 5 * H, 25 * H, "1h") == [(5 * H, 10 * H), (20 * H, 25 * H)]
    # a hole inside the cached range is trusted, not fetched again
    holed = np.delete(grid, 4)
    assert missing_spans(holed, 10 * H, 20 * H, "1h") == []


@pytest.mark.parametrize("tf", ["1h", "4h", "1d", "1w"])
def test_window_start_is_on_the_grid(tf):
    start, end = analysis_window(ms("2025-03-07 05:43"), 3, tf)
    assert grid_floor(start, tf) == start and grid_floor(end, tf) == end
