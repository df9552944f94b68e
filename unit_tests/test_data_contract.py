"""Every data-contract error of SPEC §2 is caught, with where, expected vs found, and a fix."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from moola.config import DataConfig
from moola.data.dataset import LABELED, check_data, load_dataset
from moola.data.errors import DataContractError


def problems_of(root, config=None):
    config = config or DataConfig()
    return [str(p) for p in check_data(root, config)[1]]


def test_valid_folder_loads_with_no_problems(data_folder):
    dataset = load_dataset(data_folder.write(), DataConfig())
    assert dataset.labeled.features.shape == (20, 12, 4)
    assert dataset.labeled.features.dtype == np.float32
    assert dataset.summary()["n_train"] == 14


def test_missing_file_is_named_with_the_fix(data_folder):
    root = data_folder.write()
    (root / "raw/unlabeled_windows.parquet").unlink()
    [problem] = problems_of(root)
    assert "unlabeled_windows.parquet" in problem and "no such file" in problem and "--demo" in problem


def test_missing_column_lists_found_columns(data_folder):
    del data_folder.labeled["label"]
    problems = problems_of(data_folder.write())
    assert any("column 'label'" in p and "window_id" in p for p in problems)


def test_flat_feature_list_says_how_to_reshape(data_folder):
    root = data_folder.write()
    path = root / "processed/train_clean.parquet"
    table = pq.read_table(path)
    flat = pa.array([np.asarray(row).reshape(-1).tolist() for row in table["features"].to_pylist()])
    pq.write_table(table.set_column(table.column_names.index("features"), "features", flat), path)
    problems = problems_of(root)
    assert any("flat list of 48 floats" in p and "reshape(-1, 4)" in p for p in problems)


def test_ragged_windows_name_the_rows(data_folder):
    root = data_folder.write()
    path = root / "processed/train_clean.parquet"
    table = pq.read_table(path)
    rows = table["features"].to_pylist()
    rows[3] = rows[3][:-2]
    pq.write_table(table.set_column(table.column_names.index("features"), "features", pa.array(rows)), path)
    assert any("rows 3 (1 in all)" in p and "same number of bars" in p for p in problems_of(root))


@pytest.mark.parametrize("bad, name", [(np.nan, "NaN"), (np.inf, "inf")])
def test_non_finite_values_name_the_rows(data_folder, bad, name):
    data_folder.labeled["features"][5, 2, 1] = bad
    assert any(f"{name} in rows 5" in p for p in problems_of(data_folder.write()))


@pytest.mark.parametrize("channel, value, message", [
    (1, 0.0, "high < max(open, close)"),
    (2, 1e9, "low > min(open, close)"),
])
def test_invalid_ohlc_bars_are_caught(data_folder, channel, value, message):
    data_folder.labeled["features"][7, 4, channel] = value
    assert any(message in p and "rows 7" in p for p in problems_of(data_folder.write()))


def test_high_below_low_is_caught(data_folder):
    bar = data_folder.labeled["features"][2, 0]
    bar[1], bar[2] = bar[2] - 1, bar[1] + 1
    assert any("high < low" in p for p in problems_of(data_folder.write()))


def test_generic_channels_skip_ohlc_checks(data_folder):
    data_folder.labeled["features"][7, 4, 1] = 0.0
    assert problems_of(data_folder.write(), DataConfig(channels="generic")) == []


def test_duplicate_window_ids_are_caught(data_folder):
    data_folder.labeled["window_id"][4] = data_folder.labeled["window_id"][3]
    assert any("window_id" in p and "1 repeated" in p for p in problems_of(data_folder.write()))


def test_unexpected_label_set_names_the_override(data_folder):
    data_folder.labeled["label"][0] = "breakout"
    assert any("exactly the classes" in p and "breakout" in p and "data.classes" in p
               for p in problems_of(data_folder.write()))


def test_class_missing_from_val_is_caught(data_folder):
    data_folder.labeled["label"] = ["consolidation", "retracement"] * 7 + ["consolidation"] * 6
    assert any("val rows" in p and "'retracement'" in p for p in problems_of(data_folder.write()))


@pytest.mark.parametrize("split, message", [
    ({"train_indices": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
      "val_indices": [14, 15, 16, 17, 18, 19]}, "disjoint"),
    ({"train_indices": list(range(14)), "val_indices": [14, 15, 99]}, "out-of-range [99]"),
    ({"train_indices": list(range(14)), "val_indices": []}, "an empty list"),
    ({"train_indices": list(range(6, 20)), "val_indices": list(range(6))}, "temporal split"),
])
def test_bad_split_lists_are_caught(data_folder, split, message):
    data_folder.split = split
    assert any(message in p for p in problems_of(data_folder.write()))


def test_legacy_keys_are_accepted(data_folder):
    data_folder.split = {"fold": 0, "seed": 17, "k": 5, "train_idx": list(range(14)), "val_idx": list(range(14, 20)),
                         "train_size": 14, "val_size": 6}
    assert problems_of(data_folder.write()) == []


def test_shuffled_kfold_split_is_rejected_as_non_temporal(data_folder):
    rows = np.random.default_rng(3).permutation(20).tolist()
    data_folder.split = {"train_idx": sorted(rows[:14]), "val_idx": sorted(rows[14:])}
    [problem] = problems_of(data_folder.write())
    assert "temporal" in problem and "make-split" in problem


def test_temporal_order_follows_timestamps_not_rows(data_folder):
    data_folder.labeled["timestamp"] = data_folder.labeled["timestamp"][::-1].copy()
    assert any("temporal split, by timestamp" in p for p in problems_of(data_folder.write()))


def test_identical_windows_across_the_split_are_caught(data_folder):
    data_folder.labeled["features"][15] = data_folder.labeled["features"][2]
    assert any("identical to a train row" in p and "rows [15]" in p for p in problems_of(data_folder.write()))


def test_unlabeled_copy_of_a_val_window_is_leakage(data_folder):
    data_folder.unlabeled["features"][9] = data_folder.labeled["features"][17]
    assert any("pretraining pool" in p and "rows [17]" in p for p in problems_of(data_folder.write()))


def test_every_problem_is_reported_not_just_the_first(data_folder):
    data_folder.labeled["window_id"][4] = data_folder.labeled["window_id"][3]
    bar = data_folder.labeled["features"][7, 4]
    bar[2] = max(bar[0], bar[3]) + 0.1  # low above the body, still below the high
    data_folder.unlabeled["features"][9] = data_folder.labeled["features"][17]
    with pytest.raises(DataContractError, match=r"3 data problem\(s\)") as excinfo:
        load_dataset(data_folder.write(), DataConfig())
    assert len(excinfo.value.problems) == 3


def test_malformed_split_json_names_the_fix(data_folder):
    root = data_folder.write()
    (root / "artifacts/splits/v1/fold_0.json").write_text(json.dumps({"train": [1]}))
    assert any("train_indices/val_indices" in p and "make-split" in p for p in problems_of(root))


def test_a_csv_beside_a_missing_parquet_file_gets_the_one_line_conversion(tmp_path):
    from moola.data import demo

    root = demo.write_demo(tmp_path / "data", n_unlabeled=1200)
    (root / LABELED).rename((root / LABELED).with_suffix(".csv"))
    _, problems = check_data(root, DataConfig())
    [problem] = [p for p in problems if p.where == str(root / LABELED)]
    assert "moola does not read CSV" in str(problem) and "train_clean.csv beside it" in str(problem)
    assert f"d.to_parquet('{root / LABELED}')" in str(problem)
