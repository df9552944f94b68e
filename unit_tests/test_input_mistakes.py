"""Every input mistake gets a gate-0 answer: a problem naming where, expected vs found and the fix;
never an internal error, never silent acceptance (issue 10)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from moola.config import DataConfig
from moola.data.dataset import LABELED, SPLIT, UNLABELED, check_data
from moola.results import read_lines
from moola.stages.context import resolve_settings
from moola.stages.env import verify_environment

from .conftest import DataFolder
from .gate_runs import REPO


def settings(root: Path, tmp_path: Path, *overrides):
    return resolve_settings(root, data_dir=str(root), artifacts_dir=str(tmp_path / "artifacts"), results=None,
                            device="cpu", profile="quick", overrides=list(overrides), seed=17, fresh=False,
                            demo=False)


def nested(features: np.ndarray) -> pa.Array:
    return pa.array([w.tolist() for w in np.asarray(features)])


def write_table(path: Path, columns: dict) -> None:
    """Write arbitrary arrow columns (the corruption decides the types)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({k: v if isinstance(v, (pa.Array, pa.ChunkedArray)) else pa.array(v)
                             for k, v in columns.items()}), path)


def labeled_columns(folder: DataFolder) -> dict:
    table = folder.labeled
    return {"window_id": pa.array(table["window_id"]), "label": pa.array(table["label"]),
            "timestamp": pa.array(table["timestamp"]), "features": nested(table["features"])}


# Column-level corruptions, generated: every column of the labeled file × every way it can be wrong.
def _nulls(n, column):
    values = column.to_pylist()
    values[3] = None
    return pa.array(values, type=column.type)


CORRUPTIONS = {
    "nulls": _nulls,
    "ints": lambda n, column: pa.array(np.arange(n)),
    "floats": lambda n, column: pa.array(np.linspace(0, 1, n)),
    "strings": lambda n, column: pa.array([f"01/{i % 28 + 1:02d}/2024 10:00" for i in range(n)]),
    "floats_nan": lambda n, column: pa.array(np.where(np.arange(n) == 2, np.nan, np.arange(n, dtype=float))),
    "lists": lambda n, column: pa.array([[1, 2]] * n),
    "all_null": lambda n, column: pa.nulls(n),
    "binary_latin1": lambda n, column: pa.array([f"caf\xe9 {i}".encode("latin-1") for i in range(n)], pa.binary()),
    "struct": lambda n, column: pa.array([{"a": i} for i in range(n)]),
}
# Which corruptions are a mistake for which column (ints are valid window ids and timestamps would be epoch numbers).
EXPECTED_PROBLEM = {
    "window_id": {"nulls", "floats_nan", "lists", "all_null", "binary_latin1", "struct"},
    "label": {"nulls", "floats_nan", "ints", "floats", "strings", "lists", "all_null", "binary_latin1", "struct"},
    "timestamp": {"nulls", "floats_nan", "ints", "floats", "strings", "lists", "all_null", "binary_latin1", "struct"},
    "features": {"nulls", "floats_nan", "ints", "floats", "strings", "lists", "all_null", "binary_latin1", "struct"},
}
COLUMN_VARIANTS = [(column, name) for column, names in EXPECTED_PROBLEM.items() for name in sorted(names)]


def _file_variant(name):
    """File-level corruptions: (name, function(folder, root) applied after a valid write)."""
    def garbage(path, data=b"not a parquet file\n"):
        path.write_bytes(data)

    def pool(folder, root, features, **extra):
        write_table(root / UNLABELED, {"window_id": [f"u{i}" for i in range(len(features))],
                                       "features": features, **extra})

    variants = {
        "labeled_zero_bytes": lambda f, r: garbage(r / LABELED, b""),
        "labeled_text": lambda f, r: garbage(r / LABELED),
        "labeled_csv": lambda f, r: pd.DataFrame({"a": [1]}).to_csv(r / LABELED),
        "labeled_empty_rows": lambda f, r: write_table(r / LABELED, {
            "window_id": pa.array([], pa.string()), "label": pa.array([], pa.string()),
            "features": pa.nulls(0)}),
        "labeled_no_label": lambda f, r: write_table(r / LABELED, {
            k: v for k, v in labeled_columns(f).items() if k != "label"}),
        "labeled_flat_at_root": lambda f, r: (r / LABELED).rename(r / LABELED.name),
        "labeled_transposed": lambda f, r: write_table(r / LABELED, {
            **labeled_columns(f), "features": nested(np.swapaxes(f.labeled["features"], 1, 2))}),
        "labeled_three_levels": lambda f, r: write_table(r / LABELED, {
            **labeled_columns(f), "features": nested(f.labeled["features"][..., None])}),
        "labeled_string_bars": lambda f, r: write_table(r / LABELED, {
            **labeled_columns(f), "features": pa.array([[[str(v) for v in bar] for bar in w]
                                                        for w in f.labeled["features"].tolist()])}),
        "labeled_nat": lambda f, r: write_table(r / LABELED, {
            **labeled_columns(f), "timestamp": pa.array(pd.Series(f.labeled["timestamp"]).where(
                np.arange(len(f.labeled["timestamp"])) != 4))}),
        "pool_empty": lambda f, r: write_table(r / UNLABELED, {"window_id": pa.array([], pa.string()),
                                                               "features": pa.nulls(0)}),
        "pool_short_windows": lambda f, r: pool(f, r, nested(f.unlabeled["features"][:, :10])),
        "pool_transposed": lambda f, r: pool(f, r, nested(np.swapaxes(f.unlabeled["features"], 1, 2))),
        "pool_garbage": lambda f, r: garbage(r / UNLABELED),
        "pool_nan": lambda f, r: pool(f, r, nested(np.where(np.arange(12)[None, :, None] == 3, np.nan,
                                                            f.unlabeled["features"]))),
        "split_strings": lambda f, r: (r / SPLIT).write_text(json.dumps(
            {k: [str(i) for i in v] for k, v in f.split.items()})),
        "split_empty_file": lambda f, r: (r / SPLIT).write_text(""),
        "split_latin1": lambda f, r: (r / SPLIT).write_bytes('{"train_indices": [1], "caf\xe9": 1}'.encode("latin-1")),
        "split_list": lambda f, r: (r / SPLIT).write_text("[1, 2, 3]"),
        "split_floats": lambda f, r: (r / SPLIT).write_text(json.dumps(
            {k: [float(i) for i in v] for k, v in f.split.items()})),
        "split_nulls": lambda f, r: (r / SPLIT).write_text(json.dumps(
            {"train_indices": [None, 1], "val_indices": f.split["val_indices"]})),
        "split_out_of_range": lambda f, r: (r / SPLIT).write_text(json.dumps(
            {"train_indices": f.split["train_indices"], "val_indices": [99, 100]})),
        "split_flat_at_root": lambda f, r: (r / SPLIT).rename(r / SPLIT.name),
        "split_huge_int": lambda f, r: (r / SPLIT).write_text(json.dumps(
            {"train_indices": [10**30], "val_indices": f.split["val_indices"]})),
        "split_folder": lambda f, r: ((r / SPLIT).unlink(), (r / SPLIT).mkdir()),
        "labeled_null_bar": lambda f, r: write_table(r / LABELED, {
            **labeled_columns(f), "features": pa.array([[None if (i, t) == (3, 2) else bar for t, bar in enumerate(w)]
                                                        for i, w in enumerate(f.labeled["features"].tolist())])}),
        "labeled_zero_bars": lambda f, r: write_table(r / LABELED, {
            **labeled_columns(f), "features": pa.array([[] for _ in f.labeled["window_id"]], pa.list_(pa.list_(pa.float64())))}),
        "labeled_zero_channels": lambda f, r: write_table(r / LABELED, {
            **labeled_columns(f), "features": pa.array([[[] for _ in range(12)] for _ in f.labeled["window_id"]],
                                                       pa.list_(pa.list_(pa.float64())))}),
        "labeled_duplicate_columns": lambda f, r: pq.write_table(pa.Table.from_arrays(
            [*labeled_columns(f).values(), pa.array(f.labeled["label"])], names=[*labeled_columns(f), "label"]),
            r / LABELED),
        "meta_bad_json": lambda f, r: (r / "moola_dataset.json").write_text("{"),
        "meta_classes_not_a_list": lambda f, r: (r / "moola_dataset.json").write_text('{"classes": 5}'),
        "meta_channels_upper": lambda f, r: (r / "moola_dataset.json").write_text('{"channels": "OHLC"}'),
        "meta_unknown_key": lambda f, r: (r / "moola_dataset.json").write_text('{"chanels": "generic"}'),
        "labeled_int_bars_with_null": lambda f, r: write_table(r / LABELED, {
            **labeled_columns(f), "features": pa.array([[[None if (i, t, c) == (5, 1, 2) else int(v) for c, v in enumerate(bar)]
                                                         for t, bar in enumerate(w)]
                                                        for i, w in enumerate(f.labeled["features"].tolist())])}),
        "labeled_float32_overflow": lambda f, r: write_table(r / LABELED, {
            **labeled_columns(f), "features": nested(np.where(np.arange(12)[None, :, None] == 2, 1e39,
                                                              f.labeled["features"]))}),
        "meta_classes_empty": lambda f, r: (r / "moola_dataset.json").write_text('{"classes": []}'),
        "pool_shape_and_no_split": lambda f, r: ((r / SPLIT).unlink(), pool(f, r, nested(f.unlabeled["features"][:, :10]))),
    }
    return variants[name]


FILE_VARIANTS = ["labeled_zero_bytes", "labeled_text", "labeled_csv", "labeled_empty_rows", "labeled_no_label",
                 "labeled_flat_at_root", "labeled_transposed", "labeled_three_levels", "labeled_string_bars",
                 "labeled_nat", "pool_empty", "pool_short_windows", "pool_transposed", "pool_garbage", "pool_nan",
                 "split_strings", "split_empty_file", "split_latin1", "split_list", "split_floats", "split_nulls",
                 "split_out_of_range", "split_flat_at_root", "split_huge_int", "split_folder", "labeled_null_bar",
                 "labeled_zero_bars", "labeled_zero_channels", "labeled_duplicate_columns", "meta_bad_json",
                 "meta_classes_not_a_list", "meta_channels_upper", "meta_unknown_key", "labeled_int_bars_with_null",
                 "labeled_float32_overflow", "meta_classes_empty", "pool_shape_and_no_split"]


def corrupted_folder(tmp_path: Path, variant: tuple) -> Path:
    folder = DataFolder(tmp_path / "data")
    root = folder.write()
    kind, *what = variant
    if kind == "column":
        column, corruption = what
        columns = labeled_columns(folder)
        columns[column] = CORRUPTIONS[corruption](len(folder.labeled["window_id"]), columns[column])
        write_table(root / LABELED, columns)
    else:
        _file_variant(what[0])(folder, root)
    return root


ALL_VARIANTS = [("column", c, n) for c, n in COLUMN_VARIANTS] + [("file", name) for name in FILE_VARIANTS]


def test_the_family_has_at_least_30_generated_variants_and_the_readme_says_how_many():
    assert len(ALL_VARIANTS) >= 30 and len(set(ALL_VARIANTS)) == len(ALL_VARIANTS)
    readme = " ".join((REPO / "docs" / "data.md").read_text().split())
    assert (f"runs {len(ALL_VARIANTS)} corrupted folders — {len(COLUMN_VARIANTS)} generated column corruptions of "
            f"the labeled file, {len(FILE_VARIANTS)} broken files") in readme


def gate0_line(pytester, root: Path, tmp_path: Path):
    """`pytest gates --end-gate 0` on `root`, in process (the header reads the data, gate 0 judges it)."""
    results = tmp_path / "results.jsonl"
    outcome = pytester.runpytest_inprocess(
        str(REPO / "gates"), "--rootdir", str(REPO), "-c", str(REPO / "pytest.ini"), "--data-dir", str(root),
        "--artifacts-dir", str(tmp_path / "artifacts"), "--results", str(results), "--end-gate", "0",
        "-p", "no:cacheprovider")
    lines = read_lines(results)
    return outcome, lines


@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=["-".join(v[1:]) for v in ALL_VARIANTS])
def test_a_corrupted_input_is_a_specific_problem_never_an_internal_error(tmp_path, variant):
    """What gate 0 reads (the folder's own settings, then its files), checked directly (fast); the slow
    test below runs gate 0 itself on each."""
    from moola.data.dataset import check_data
    from moola.stages.context import resolve_settings

    root = corrupted_folder(tmp_path, variant)
    settings = resolve_settings(tmp_path, data_dir=str(root), artifacts_dir=None, results=None, device="cpu",
                                profile="quick", overrides=[], seed=17, fresh=False, demo="")
    dataset, problems = check_data(root, settings.profile.data, settings.profile.evaluation.cv)
    problems = [*settings.setup_problems, *map(str, problems)]
    assert (dataset is None or settings.setup_problems) and problems, f"{variant} accepted silently"
    for problem in problems:
        assert ": expected " in problem and ", found " in problem and "Fix: " in problem, problem
        assert "could not decode" not in problem and "while checking them" not in problem, \
            f"{variant} fell through to the safety net instead of a specific message: {problem}"


@pytest.mark.slow  # a gate session per variant (~0.2 s each, 71 in all): CI's slow set
@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=["-".join(v[1:]) for v in ALL_VARIANTS])
def test_a_corrupted_input_is_a_gate0_line_never_an_internal_error(pytester, tmp_path, variant):
    root = corrupted_folder(tmp_path, variant)
    outcome, lines = gate0_line(pytester, root, tmp_path)
    assert outcome.ret == 1 and "INTERNALERROR" not in outcome.stdout.str(), outcome.stdout.str()[-3000:]
    [line] = lines
    assert line["gate"] == "0_verify_env" and line["status"] == "failed", f"{variant} accepted silently"
    assert line["problems"] and line["metrics"]["n_problems"] == len(line["problems"])
    for problem in line["problems"]:
        assert ": expected " in problem and ", found " in problem and "Fix: " in problem, problem
        assert "could not decode" not in problem and "while checking them" not in problem, \
            f"{variant} fell through to the safety net instead of a specific message: {problem}"
    assert not line.get("warnings"), f"{variant} raised warnings while being checked: {line['warnings']}"
    assert line["data"]["root"] == str(root)


def test_gate_0s_line_carries_the_data_summary_under_data(pytester, tmp_path):
    root = DataFolder(tmp_path / "data").write()
    _, [line] = gate0_line(pytester, root, tmp_path)
    assert line["status"] == "warning" and "pool window(s)" in line["reason"]  # 30 windows: a small pool
    assert line["data"]["n_train"] == 14 and line["data"]["window_shape"] == [12, 4] and "fingerprint" in line["data"]
    assert "data_summary" not in line


def test_the_safety_net_turns_an_unforeseen_failure_into_a_problem(tmp_path, monkeypatch):
    from moola.data import validate

    def broken(*args, **kwargs):
        raise RuntimeError("a check nobody foresaw")

    monkeypatch.setattr(validate, "check_ids", broken)
    dataset, [problem] = check_data(DataFolder(tmp_path / "data").write(), DataConfig())
    assert dataset is None and "RuntimeError: a check nobody foresaw" in str(problem) and "Fix: " in str(problem)


@pytest.mark.slow  # the real gate 0 in a pytest subprocess (~5 s); CI runs it on both stacks
def test_string_timestamps_and_null_labels_reach_gate_0_through_pytest(pytester, tmp_path):
    """The two inputs that crashed pytest (INTERNALERROR, exit 3, no line): now one failed gate-0 line."""
    folder = DataFolder(tmp_path / "data")
    folder.labeled["timestamp"] = np.array(["01/01/2024 10:00"] * 20, dtype=object)
    folder.labeled["label"] = [None, *folder.labeled["label"][1:]]
    root = folder.write()
    results = tmp_path / "results.jsonl"
    outcome = pytester.runpytest_subprocess(
        str(REPO / "gates"), "--rootdir", str(REPO), "-c", str(REPO / "pytest.ini"), "--data-dir", str(root),
        "--artifacts-dir", str(tmp_path / "artifacts"), "--results", str(results), "--end-gate", "0",
        "-p", "no:cacheprovider", timeout=300)
    assert outcome.ret == 1, outcome.stdout.str()[-2000:]
    [line] = read_lines(results)
    assert line["gate"] == "0_verify_env" and line["status"] == "failed"
    problems = line["problems"]
    assert any("column 'timestamp'" in p and "'01/01/2024 10:00'" in p and "pd.to_datetime" in p for p in problems)
    assert any("column 'label'" in p and "rows 0 (1 in all)" in p for p in problems)
    assert "Settings(" not in outcome.stdout.str() and "INTERNALERROR" not in outcome.stdout.str()


def test_nan_and_inf_in_one_file_are_both_reported_with_rows(data_folder):
    data_folder.labeled["features"][2, 1, 0] = np.nan
    data_folder.labeled["features"][6, 3, 2] = np.inf
    problems = [str(p) for p in check_data(data_folder.write(), DataConfig())[1]]
    assert any("NaN in rows 2 (1 in all)" in p for p in problems), problems
    assert any("inf in rows 6 (1 in all)" in p for p in problems), problems


def test_null_values_inside_windows_name_their_rows(data_folder):
    root = data_folder.write()
    columns = labeled_columns(data_folder)
    windows = data_folder.labeled["features"].tolist()
    windows[9][4][1] = None
    write_table(root / LABELED, {**columns, "features": pa.array(windows)})
    problems = [str(p) for p in check_data(root, DataConfig())[1]]
    assert any("null values in rows 9 (1 in all)" in p for p in problems), problems


def test_transposed_windows_get_one_message_that_says_transpose(data_folder):
    data_folder.labeled["features"] = np.swapaxes(data_folder.labeled["features"], 1, 2)
    problems = [str(p) for p in check_data(data_folder.write(), DataConfig())[1]]
    labeled = [p for p in problems if "train_clean" in p]
    assert len(labeled) == 1 and "transposed" in labeled[0] and ".T" in labeled[0], problems


def test_split_indices_as_strings_say_so_without_spurious_empty_lists(data_folder):
    data_folder.split = {k: [str(i) for i in v] for k, v in data_folder.split.items()}
    problems = [str(p) for p in check_data(data_folder.write(), DataConfig())[1]]
    assert problems and not any("empty list" in p for p in problems), problems
    assert any("str values, e.g. '0'" in p and "int(i)" in p for p in problems), problems


def test_an_empty_pool_says_empty_not_type_null(data_folder):
    root = data_folder.write()
    write_table(root / UNLABELED, {"window_id": pa.array([], pa.string()), "features": pa.nulls(0)})
    [problem] = [str(p) for p in check_data(root, DataConfig())[1]]
    assert "an empty file (0 rows)" in problem and "null" not in problem


@pytest.mark.parametrize("relative", [LABELED, UNLABELED, SPLIT])
def test_files_flat_in_the_data_root_are_named_with_the_move(data_folder, relative):
    root = data_folder.write()
    (root / relative).rename(root / relative.name)
    [problem] = [str(p) for p in check_data(root, DataConfig())[1]]
    assert f"found {relative.name} under the data root" in problem and f"mv {root / relative.name}" in problem


def test_nat_in_the_timestamp_column_is_not_a_temporal_pass(data_folder):
    times = pd.Series(data_folder.labeled["timestamp"])
    times[15] = pd.NaT
    data_folder.labeled["timestamp"] = times.values
    problems = [str(p) for p in check_data(data_folder.write(), DataConfig())[1]]
    assert any("column 'timestamp'" in p and "NaT" in p and "rows 15" in p for p in problems), problems


def test_timezone_aware_timestamps_are_accepted(data_folder):
    data_folder.labeled["timestamp"] = pd.date_range("2024-01-01", periods=20, freq="h", tz="America/Chicago")
    dataset, problems = check_data(data_folder.write(), DataConfig())
    assert not problems and dataset.labeled.timestamps.dtype == np.dtype("datetime64[ns]")
    assert (np.diff(dataset.labeled.timestamps) == np.timedelta64(3600, "s")).all()


# --- leakage as the model sees it ------------------------------------------------------------------

@pytest.mark.parametrize("where", ["pool", "train"])
def test_a_scaled_copy_of_a_val_window_is_leakage(data_folder, where):
    copy = data_folder.labeled["features"][17] * 1.0001
    if where == "pool":
        data_folder.unlabeled["features"][5] = copy
    else:
        data_folder.labeled["features"][3] = copy
    problems = [str(p) for p in check_data(data_folder.write(), DataConfig())[1]]
    assert any("rows [17]" in p and "normalisation" in p for p in problems), problems


def history_windows(n_windows: int, stride: int, n_bars: int = 12, seed: int = 1) -> np.ndarray:
    """Windows cut every `stride` bars from one OHLC price path: neighbours share bars."""
    from .conftest import ohlc_windows

    path = ohlc_windows(np.random.default_rng(seed), 1, n_windows * stride + n_bars)[0]  # (bars, 4)
    return np.stack([path[i * stride: i * stride + n_bars] for i in range(n_windows)])


def test_a_pool_cut_from_the_val_bars_by_a_sliding_window_is_leakage(data_folder):
    history = history_windows(10, 1)  # window i+1 is window i shifted by one bar
    data_folder.labeled["features"][17] = history[0]
    data_folder.unlabeled["features"][:9] = history[1:]
    root = data_folder.write()
    problems = [str(p) for p in check_data(root, DataConfig())[1]]
    # holdout (check_data's default) refuses, with a command that works without timestamps
    assert any("share bars" in p and "labeled row 17" in p and f"python -m moola filter-pool {root}" in p
               for p in problems), problems


def test_a_train_window_one_bar_before_a_val_window_is_leakage(data_folder):
    history = history_windows(2, 1)
    data_folder.labeled["features"][13], data_folder.labeled["features"][14] = history  # last train, first val
    problems = [str(p) for p in check_data(data_folder.write(), DataConfig())[1]]
    assert any("train row 13 and row 14 (offset" in p and "make-split" in p for p in problems), problems


def test_windows_that_share_only_a_flat_stretch_are_not_linked():
    from moola.data.overlap import shared_bars

    flat = np.full((2, 12, 4), 20_000.0)
    flat[0, :3] += 1.0  # different bars before a long flat stretch
    flat[1, -3:] -= 1.0
    assert len(shared_bars(flat[:1], flat[1:])) == 0


def test_shared_bars_finds_every_offset_of_a_sliding_cut_and_nothing_else():
    from moola.data.overlap import min_shared_bars, shared_bars

    windows = history_windows(30, 2)  # stride 2 bars, 12-bar windows
    other = history_windows(5, 3, seed=2)  # another history
    pairs = shared_bars(windows, windows[10:11])
    k = min_shared_bars(12)
    expected = {(i, 0, 2 * (10 - i)) for i in range(30) if 12 - abs(2 * (10 - i)) >= k}
    assert {tuple(p) for p in pairs.tolist()} == expected
    assert len(shared_bars(windows, other)) == 0


def test_folds_purge_windows_that_share_bars_with_the_scored_block():
    from moola.data.overlap import sharing_matrix
    from moola.evaluation.folds import make_folds

    windows = history_windows(20, 3)  # 12-bar windows every 3 bars: 2 neighbours each side share >= 6 bars
    folds = make_folds(20, "blocked", 4, embargo=0, linked=sharing_matrix(windows))
    fold = folds[1]  # scores rows 5..9
    assert set(fold.purged.tolist()) == {3, 4, 10, 11}
    assert not set(fold.train.tolist()) & set(range(3, 12))


def test_the_pretraining_pool_drops_shifted_windows_without_timestamps(tmp_path):
    from moola.stages.context import build_context
    from moola.stages.encoder import pretraining_pool

    folder = DataFolder(tmp_path / "data", n_labeled=20, n_unlabeled=30)
    del folder.labeled["timestamp"]
    history = history_windows(4, 1)
    folder.labeled["features"][4] = history[0]  # a train row (blocked CV scores it too)
    folder.unlabeled["features"][10:13] = history[1:]
    rows, counts = pretraining_pool(build_context(settings(folder.write(), tmp_path)))
    assert counts["sharing_bars_with_scored"] == 3 and not {10, 11, 12} & set(rows.tolist())


# --- the pool, and what a saved model says about itself --------------------------------------------

def test_a_pool_too_small_to_pretrain_on_is_a_gate0_warning_with_its_threshold(tmp_path):
    folder = DataFolder(tmp_path / "data", n_labeled=20, n_unlabeled=3)
    report = verify_environment(settings(folder.write(), tmp_path))
    assert not report["problems"]
    [warning] = report["warnings"]
    assert "3 pool window(s) (144 values)" in warning and "parameters" in warning and "docs/data.md" in warning
    big = DataFolder(tmp_path / "big", n_labeled=20, n_unlabeled=30)  # 30 × 12 × 4 > a hidden-4 encoder
    assert not verify_environment(settings(big.write(), tmp_path, "pretrain.hidden_size=4"))["warnings"]


def test_a_saved_model_rebuilds_from_its_own_metadata(tmp_path):
    import torch

    from moola import models
    from moola.artifacts import BASELINE, load_checkpoint
    from moola.stages.classifiers import run_baseline
    from moola.stages.context import build_context

    root = DataFolder(tmp_path / "data").write()
    ctx = build_context(settings(root, tmp_path, "evaluation.cv=holdout", "baseline.epochs=1",
                                 "baseline.hidden_size=12", "data.channels=generic"))
    run_baseline(ctx.for_fit(ctx.folds[0], ctx.seed))
    state, metadata = load_checkpoint(tmp_path / "artifacts" / BASELINE)
    model = models.rebuild(metadata["architecture"])
    model.load_state_dict(state)  # strict: every tensor by name and shape
    assert metadata["architecture"]["args"]["hidden_size"] == 12
    assert metadata["input"] == {"window_shape": [12, 4], "channels": "generic", "shared_channels": False,
                                 "normalisation": "per-window z-score over the bars read, per channel",
                                 "visible_bars": 0, "span_channel": False, "span_bars": 0}
    assert metadata["gate"] == {"gate": "6_baseline_simplelstm", "status": "pending", "run_id": ctx.settings.run_id}
    if (REPO / ".git").exists():
        assert metadata["versions"]["git"], "a checkout's commit belongs in the checkpoint as in the results line"
    x = torch.from_numpy(ctx.windows[:3])
    assert model(x).shape == (3, 2)


def test_every_network_rebuilds_from_its_architecture():
    from moola import models
    from moola.models.enhanced_lstm import EnhancedSimpleLSTM
    from moola.models.masked_autoencoder import MaskedAutoencoder
    from moola.models.simple_lstm import SimpleLSTM

    for network in (EnhancedSimpleLSTM(3, 4, hidden_size=8, num_layers=3), MaskedAutoencoder(2, 6, 1), SimpleLSTM(5, 3, 7)):
        rebuilt = models.rebuild(models.architecture(network))
        rebuilt.load_state_dict(network.state_dict())
    with pytest.raises(ValueError, match="predates architecture metadata"):
        models.rebuild({})


def test_zoned_and_naive_timestamps_in_the_two_files_are_a_problem(data_folder):
    data_folder.labeled["timestamp"] = pd.date_range("2024-01-01", periods=20, freq="h", tz="UTC")
    data_folder.unlabeled["timestamp"] = pd.date_range("2023-01-01", periods=30, freq="h").values
    problems = [str(p) for p in check_data(data_folder.write(), DataConfig())[1]]
    assert any("unlabeled_windows.parquet column 'timestamp'" in p and "tz_localize" in p for p in problems), problems


@pytest.mark.parametrize("make", ["file", "missing"])
def test_a_data_root_that_is_not_a_folder_is_one_problem(tmp_path, make):
    root = tmp_path / "data"
    if make == "file":
        root.write_text("x")
    [problem] = [str(p) for p in check_data(root, DataConfig())[1]]
    assert ("a file" if make == "file" else "no such folder") in problem and "--data-dir" in problem



def test_gate_0s_line_has_the_data_summary_with_q_too(pytester, tmp_path):
    """pytest -q skips the report header, where the data used to be read."""
    root = DataFolder(tmp_path / "data").write()
    results = tmp_path / "results.jsonl"
    pytester.runpytest_inprocess(
        str(REPO / "gates"), "--rootdir", str(REPO), "-c", str(REPO / "pytest.ini"), "--data-dir", str(root),
        "--artifacts-dir", str(tmp_path / "artifacts"), "--results", str(results), "--end-gate", "0", "-q",
        "-p", "no:cacheprovider")
    [line] = read_lines(results)
    assert line["data"]["n_train"] == 14 and "fingerprint" in line["data"]


def test_collect_only_writes_no_results_line(pytester, tmp_path):
    root = DataFolder(tmp_path / "data").write()
    results = tmp_path / "results.jsonl"
    pytester.runpytest_inprocess(
        str(REPO / "gates"), "--rootdir", str(REPO), "-c", str(REPO / "pytest.ini"), "--data-dir", str(root),
        "--artifacts-dir", str(tmp_path / "artifacts"), "--results", str(results), "--co", "-p", "no:cacheprovider")
    assert not results.exists()


def test_a_data_dir_one_level_too_deep_names_the_right_one(data_folder):
    root = data_folder.write()
    problems = [str(p) for p in check_data(root / "processed", DataConfig())[1]]
    assert any(f"pass --data-dir {root}" in p for p in problems) and not any("mkdir" in p for p in problems), problems


def test_a_bad_dataset_settings_file_stops_a_run_that_skips_gate_0(tmp_path):
    from moola.stages.context import build_context

    root = DataFolder(tmp_path / "data").write()
    (root / "moola_dataset.json").write_text('{"cv": "Holdout"}')
    with pytest.raises(ValueError, match="moola_dataset.json.*did you mean 'holdout'"):
        build_context(settings(root, tmp_path))


def test_legacy_test_idx_is_read_and_a_null_test_list_is_none(data_folder):
    from moola.data.split import read_split

    data_folder.split = {"train_idx": list(range(10)), "val_idx": list(range(10, 15)), "test_idx": list(range(15, 20))}
    root = data_folder.write()
    split, problems = read_split(root / SPLIT)
    assert not problems and split.test.tolist() == list(range(15, 20))
    (root / SPLIT).write_text(json.dumps({"train_indices": [0, 1], "val_indices": [2], "test_indices": None}))
    split, problems = read_split(root / SPLIT)
    assert not problems and len(split.test) == 0


def test_a_model_whose_gate_this_session_does_not_run_is_not_saved(tmp_path):
    import dataclasses

    from moola.artifacts import BASELINE
    from moola.stages.classifiers import run_baseline
    from moola.stages.context import build_context

    root = DataFolder(tmp_path / "data").write()
    ctx = build_context(settings(root, tmp_path, "evaluation.cv=holdout", "baseline.epochs=1"))
    narrowed = dataclasses.replace(ctx, judged=frozenset({"7_ensemble"}))  # e.g. pytest gates -k ensemble
    assert run_baseline(narrowed.for_fit(ctx.folds[0], ctx.seed)).artifact is None
    assert not (tmp_path / "artifacts" / BASELINE).exists()
    assert run_baseline(ctx.for_fit(ctx.folds[0], ctx.seed)).artifact == tmp_path / "artifacts" / BASELINE



def test_a_narrowed_run_writes_neither_the_augmented_model_nor_its_synthetic_rows(tmp_path):
    import dataclasses

    from moola.stages.augmented import PROVENANCE, run_augmented, samples_checked_by
    from moola.stages.classifiers import run_finetune
    from moola.stages.context import build_context

    from .gate_runs import TINY

    root = DataFolder(tmp_path / "data").write()
    ctx = build_context(settings(root, tmp_path, "evaluation.cv=holdout", *TINY))
    narrowed = dataclasses.replace(ctx, judged=frozenset({"7_ensemble"})).for_fit(ctx.folds[0], ctx.seed)
    augmented = run_augmented(narrowed, samples_checked_by(narrowed, run_finetune(narrowed, None).model), None)
    assert augmented.artifact is None and "provenance" not in augmented.extra
    assert not (tmp_path / "artifacts" / PROVENANCE).exists()


def test_a_pool_of_another_window_length_is_reported_even_without_a_split(data_folder):
    root = data_folder.write()
    (root / SPLIT).unlink()
    write_table(root / UNLABELED, {"window_id": [f"u{i}" for i in range(30)],
                                   "features": nested(data_folder.unlabeled["features"][:, :10])})
    problems = [str(p) for p in check_data(root, DataConfig())[1]]
    assert any("no such file" in p for p in problems)
    assert any("unlabeled_windows.parquet column 'features'" in p and "(10, 4)" in p and "labeled window length" in p
               for p in problems), problems


def test_one_class_with_no_class_list_is_a_problem(data_folder):
    data_folder.labeled["label"] = ["consolidation"] * 20
    problems = [str(p) for p in check_data(data_folder.write(), DataConfig(classes=()))[1]]
    assert any("at least two classes" in p and "only ['consolidation']" in p for p in problems), problems


def test_a_data_root_nested_in_another_keeps_its_own_hint(tmp_path):
    outer = DataFolder(tmp_path / "data").write()
    inner = DataFolder(outer / "mine").write()
    (inner / LABELED).rename(inner / LABELED.name)  # flat at its own root
    [problem] = [str(p) for p in check_data(inner, DataConfig())[1]]
    assert f"mv {inner / LABELED.name}" in problem and "--data-dir" not in problem


@pytest.mark.parametrize("keys", [("train_idx", "val_idx", "test_indices"), ("train_indices", "val_indices", "test_idx")])
def test_either_test_key_goes_with_either_key_style(data_folder, keys):
    from moola.data.split import read_split

    data_folder.split = dict(zip(keys, [list(range(10)), list(range(10, 15)), list(range(15, 20))]))
    split, problems = read_split(data_folder.write() / SPLIT)
    assert not problems and split.test.tolist() == list(range(15, 20))


def test_integer_bars_beyond_float_precision_still_get_specific_problems(data_folder):
    root = data_folder.write()
    windows = np.round(data_folder.labeled["features"]).astype(np.int64)
    windows[4, 2, 1] = 2**53 + 1  # a high no float64 can hold exactly: decoded with rounding, as before
    columns = labeled_columns(data_folder)
    columns["window_id"] = pa.array(["same"] * 2 + data_folder.labeled["window_id"][2:])
    write_table(root / LABELED, {**columns, "features": nested(windows)})
    problems = [str(p) for p in check_data(root, DataConfig())[1]]
    assert any("column 'window_id'" in p and "1 repeated" in p for p in problems), problems
    assert not any("could not decode" in p for p in problems), problems
