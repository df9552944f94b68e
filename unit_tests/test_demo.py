"""The embedded demo dataset matches the user's layout and keeps its promises."""

import numpy as np
import pytest

from moola.config import DataConfig
from moola.data import demo
from moola.data.dataset import load_dataset
from moola.data.normalize import normalize_windows


@pytest.fixture(scope="module")
def tables():
    return demo.generate(seed=17, n_unlabeled=600)


def test_layout_counts_and_split_match_the_users_data(tables):
    labeled, split = tables["labeled"], tables["split"]
    assert labeled["features"].shape == (98, 105, 4)
    assert labeled["label"].count("consolidation") == 56 and labeled["label"].count("retracement") == 42
    assert split == {"train_indices": list(range(78)), "val_indices": list(range(78, 98))}
    assert tables["unlabeled"]["features"].shape == (600, 105, 4)
    assert set(labeled) >= {"window_id", "label", "expansion_start", "expansion_end", "timestamp", "features"}


def test_prices_are_nq_like_on_the_tick_grid(tables):
    prices = tables["labeled"]["features"]
    assert 15_000 < prices.min() and prices.max() < 25_000
    np.testing.assert_array_equal(prices * 4, np.round(prices * 4))  # multiples of 0.25


def test_generation_is_deterministic_for_a_seed(tables):
    again = demo.generate(seed=17, n_unlabeled=600)
    np.testing.assert_array_equal(again["labeled"]["features"], tables["labeled"]["features"])
    assert not np.array_equal(demo.generate(seed=18, n_unlabeled=600)["labeled"]["features"],
                              tables["labeled"]["features"])


def test_no_unlabeled_window_overlaps_the_val_period(tables):
    val_start = tables["labeled"]["timestamp"][78]
    assert (tables["unlabeled"]["timestamp"] + np.timedelta64(104, "m") < val_start).all()


def test_classes_differ_in_shape_not_in_bar_volatility(tables):
    x = normalize_windows(tables["labeled"]["features"])
    labels = np.array(tables["labeled"]["label"])
    span = x[:, 30:75, 3]  # close over the pattern bars
    net_move = np.abs(span[:, -1] - span[:, 0])
    cons, retr = labels == "consolidation", labels == "retracement"
    assert np.median(net_move[retr]) > np.median(net_move[cons])  # a leg and a partial pullback vs a range
    raw = tables["labeled"]["features"][..., 3]
    bar_vol = np.diff(np.log(raw), axis=1).std(axis=1)
    ratio = np.median(bar_vol[retr]) / np.median(bar_vol[cons])
    assert 0.7 < ratio < 1.5  # not told apart by volatility alone


def test_written_demo_passes_the_data_contract(tmp_path):
    dataset = load_dataset(demo.write_demo(tmp_path / "demo", n_unlabeled=600), DataConfig())
    assert dataset.summary()["train_class_counts"] == {"consolidation": 44, "retracement": 34}
