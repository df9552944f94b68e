"""`python -m moola add-labels`: the page's CSV merged into the labeled file, or refused with the
file untouched. On the user-layout demo (no timestamps, spans, a sliding pool holding the labeled
windows) cut to the pool windows near the labeled ones, and on the seed demo (timestamps)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moola.__main__ import main
from moola.data.dataset import LABELED, SPLIT, UNLABELED, check_data
from moola.data.demos import write
from moola.data.errors import DataContractError
from moola.data.parquet import read_windows
from moola.labeling.folder import NEITHER_FILE, free_pool, read_folder, resolve_root
from moola.labeling.merge import plan
from unit_tests.conftest import small_copy


@pytest.fixture()
def user(tmp_path, user_layout_small) -> Path:
    return Path(shutil.copytree(user_layout_small, tmp_path / "data"))


def _csv(path: Path, rows: list) -> Path:
    pd.DataFrame(rows, columns=["window_id", "label", "expansion_start", "expansion_end"]).to_csv(path, index=False)
    return path


def _free_windows(root: Path) -> list:
    """Pool ids that share no bars with a labeled row."""
    root, profile = resolve_root(str(root))
    folder = read_folder(root, profile.data)
    return folder.pool.window_ids[free_pool(folder)].tolist()


def test_a_merge_places_new_rows_by_the_pool_order_with_user_ids_and_a_new_split(user, tmp_path, capsys):
    free = _free_windows(user)
    chosen = [free[10], free[-10]]
    csv = _csv(tmp_path / "labels.csv", [(chosen[0], "consolidation", "40.0", "48.0"),  # as a spreadsheet saves them
                                         (chosen[1], "retracement", 50, 55), (free[20], "neither", "", "")])
    before = read_windows(user / LABELED, labeled=True)[0]
    assert main(["add-labels", str(csv), "--data-dir", str(user)]) == 0
    out = capsys.readouterr().out
    after = read_windows(user / LABELED, labeled=True)[0]
    assert len(after) == len(before) + 2 and "98 -> 100 rows" in out and "answered neither/skip" in out
    starts = [int(w.split("_")[1]) for w in chosen]  # window_{start}: base = start / 10
    new_ids = [f"{s // 10}_exp_1" for s in starts]
    assert set(new_ids) <= set(after.window_ids.tolist()), after.window_ids[-5:]
    bases = np.array([int(w.split("_")[0]) for w in after.window_ids])
    assert (np.diff(bases) >= 0).all(), "rows are not in the pool's (time) order"
    row = after.window_ids.tolist().index(new_ids[0])
    assert after.labels[row] == "consolidation" and after.expansion[row].tolist() == [40, 48]
    split = json.loads((user / SPLIT).read_text())
    assert len(split["val_indices"]) == round(100 * 20 / 98)
    assert max(split["train_indices"]) < min(split["val_indices"])
    assert (user / "processed" / "train_clean.parquet.bak").is_file() and (user / (str(SPLIT) + ".bak")).is_file()
    root, profile = resolve_root(str(user))
    dataset, problems = check_data(root, profile.data, "blocked")
    assert dataset is not None and not problems and len(dataset.y) == 100
    folder = read_folder(root, profile.data)  # the neither answer is remembered: label-next leaves it out
    assert folder.neither == {free[20]} and not free_pool(folder)[folder.pool.window_ids.tolist().index(free[20])]


def test_rows_that_change_sides_in_the_new_split_are_named(user, tmp_path, capsys):
    free = _free_windows(user)
    late = [w for w in free if int(w.split("_")[1]) > 10 * 1100][:6]  # six windows after the val rows' history
    _csv(tmp_path / "labels.csv", [(w, "consolidation" if k % 2 else "retracement", 40, 48) for k, w in enumerate(late)])
    assert main(["add-labels", str(tmp_path / "labels.csv"), "--data-dir", str(user)]) == 0
    out = capsys.readouterr().out
    assert "existing rows that changed sides in the new temporal split: " in out and "train -> val" in out, out


def test_ids_follow_the_users_convention_row_by_row(user, tmp_path):
    """One labeled id out of the convention (a window labeled by hand, say) does not stop the rest."""
    frame = pd.read_parquet(user / LABELED)
    frame.loc[5, "window_id"] = "handmade_exp_1"
    frame.to_parquet(user / LABELED)
    window = _free_windows(user)[7]
    root, profile = resolve_root(str(user))
    merge = plan(read_folder(root, profile.data), _csv(tmp_path / "labels.csv", [(window, "retracement", 40, 48)]))
    assert merge.ids == [f"{int(window.split('_')[1]) // 10}_exp_1"]


def test_a_label_that_agrees_with_either_row_of_a_conflicting_pair_is_a_repeat(user, tmp_path):
    labeled = read_windows(user / LABELED, labeled=True)[0]
    ids = labeled.window_ids.tolist()
    pairs = [(i, j) for i in range(len(ids)) for j in range(i + 1, len(ids))
             if ids[i].split("_")[0] == ids[j].split("_")[0] and labeled.labels[i] != labeled.labels[j]
             and labeled.expansion[i].tolist() == labeled.expansion[j].tolist()]
    i, j = pairs[0]  # the demo's conflicting pair: one window, one span, two classes
    row = (f"window_{int(ids[i].split('_')[0]) * 10}", labeled.labels[j], *labeled.expansion[j].tolist())
    root, profile = resolve_root(str(user))
    csv = _csv(tmp_path / "labels.csv", [row, (_free_windows(user)[2], "retracement", 40, 48)])
    merge = plan(read_folder(root, profile.data), csv)
    assert len(merge.ids) == 1 and any("repeat a label already given" in note for note in merge.notes)


def test_the_demos_cache_is_refused_with_the_copy_to_make(tmp_path, user_layout_small, capsys):
    cache = Path(shutil.copytree(user_layout_small, tmp_path / "demo_data" / "demo-user-0123abcd4567-seed17"))
    assert main(["add-labels", str(tmp_path / "x.csv"), "--data-dir", str(cache)]) == 2
    assert "python -m moola demo-data my-data --layout user-layout" in capsys.readouterr().err
    assert main(["label-next", "3", "--data-dir", str(cache)]) == 2


@pytest.mark.slow  # writes the full seed demo (~1.3 s): CI's slow set
def test_a_merge_on_data_with_timestamps_places_rows_by_time(tmp_path, capsys):
    root = small_copy(write("seed", tmp_path / "full"), tmp_path / "seed", np.arange(0, 11_873, 25))
    pool = read_windows(root / UNLABELED, labeled=False)[0]
    free = _free_windows(root)
    early = min(free, key=lambda w: pool.timestamps[pool.window_ids.tolist().index(w)])
    csv = _csv(tmp_path / "labels.csv", [(early, "retracement", 30, 74)])
    assert main(["add-labels", str(csv), "--data-dir", str(root)]) == 0
    after = read_windows(root / LABELED, labeled=True)[0]
    assert (np.diff(after.timestamps.astype(np.int64)) >= 0).all()
    assert after.window_ids[0] == f"{early}_exp_1", after.window_ids[:3]  # the pool's ids are not window_{start}


BAD = {
    "wrong columns": (lambda free, labeled: pd.DataFrame({"id": [free[0]], "class": ["consolidation"]}),
                      "missing ['window_id', 'label']"),
    "unknown window id": (lambda free, labeled: [("window_99999999", "consolidation", 40, 48)],
                          "ids of windows in the pool"),
    "class typo": (lambda free, labeled: [(free[0], "consolidaton", 40, 48)], "'consolidaton' -> 'consolidation'"),
    "span outside the prediction bars": (lambda free, labeled: [(free[0], "retracement", 20, 40)], "bars 30..74"),
    "a contradicting second label": (lambda free, labeled: [(free[0], "retracement", 40, 48),
                                                            (free[0], "consolidation", 40, 48)],
                                     "one class per window and span"),
    "contradicting the labeled file": (lambda free, labeled: [(f"window_{int(labeled.window_ids[0].split('_')[0]) * 10}",
                                                               {"consolidation": "retracement"}.get(labeled.labels[0],
                                                                                                    "consolidation"),
                                                               *labeled.expansion[0].tolist())],
                                       "agrees with the labeled file's label"),
    "a window that leaks into val": (None, "would leak into val"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_label_file_is_refused_with_a_clear_message_and_the_labeled_file_untouched(user, tmp_path, case, capsys):
    make, expected = BAD[case]
    labeled = read_windows(user / LABELED, labeled=True)[0]
    if make is None:  # the pool window 10 bars before the first val row: placed in train, sharing 95 bars with it
        first_val = min(json.loads((user / SPLIT).read_text())["val_indices"])
        start = int(labeled.window_ids[first_val].split("_")[0]) * 10 - 10
        rows = [(f"window_{start}", "consolidation", 40, 48)]
    else:
        rows = make(_free_windows(user), labeled)
    csv = tmp_path / "labels.csv"
    if isinstance(rows, pd.DataFrame):
        rows.to_csv(csv, index=False)
    else:
        _csv(csv, rows)
    files = {p: p.read_bytes() for p in (user / LABELED, user / SPLIT)}
    assert main(["add-labels", str(csv), "--data-dir", str(user)]) == 2
    err = capsys.readouterr().err
    assert expected in err and str(csv) in err and "Fix:" in err and "Traceback" not in err, err
    assert all(p.read_bytes() == content for p, content in files.items()), "a refused merge changed a file"
    assert not list((user / "processed").glob("*.bak*")), "a refused merge left a backup"


def test_a_repeat_of_a_label_already_given_is_not_added_twice(user, tmp_path):
    labeled = read_windows(user / LABELED, labeled=True)[0]
    base = int(labeled.window_ids[0].split("_")[0])
    root, profile = resolve_root(str(user))
    csv = _csv(tmp_path / "labels.csv", [(f"window_{base * 10}", labeled.labels[0], *labeled.expansion[0].tolist()),
                                         (_free_windows(user)[3], "retracement", 40, 48)])
    merge = plan(read_folder(root, profile.data), csv)
    assert len(merge.ids) == 1 and any("repeat a label already given" in note for note in merge.notes)


def test_a_file_of_skips_alone_adds_no_row_and_is_remembered(user, tmp_path, capsys):
    window = _free_windows(user)[0]
    before = (user / LABELED).read_bytes()
    csv = _csv(tmp_path / "labels.csv", [(window, "neither", "", ""), (window, "skip", "", "")])
    assert main(["add-labels", str(csv), "--data-dir", str(user)]) == 0
    assert "no labeled row added" in capsys.readouterr().out and (user / LABELED).read_bytes() == before
    assert main(["add-labels", str(csv), "--data-dir", str(user)]) == 0  # again: recorded once
    assert (user / NEITHER_FILE).read_text().split() == ["window_id", window]
    root, profile = resolve_root(str(user))
    with pytest.raises(DataContractError, match="at least one row with a class"):  # repeats alone: nothing at all
        labeled = read_windows(user / LABELED, labeled=True)[0]
        plan(read_folder(root, profile.data), _csv(tmp_path / "again.csv", [
            (f"window_{int(labeled.window_ids[0].split('_')[0]) * 10}", labeled.labels[0], *labeled.expansion[0].tolist())]))


def test_a_problem_the_folder_already_had_does_not_refuse_the_merge(user, tmp_path, capsys):
    """Gate 0's problems are compared numbers aside: a row number that shifts when rows are inserted is the
    same problem, and the merge goes ahead (the review found it refused, and left a backup)."""
    frame = pd.read_parquet(user / LABELED)
    frame.loc[60, "expansion_start"] = 20  # outside the prediction bars 30-74: gate 0 refuses the folder already
    frame.to_parquet(user / LABELED)
    early = _free_windows(user)[0]  # placed before row 60: its row number shifts
    assert main(["add-labels", str(_csv(tmp_path / "labels.csv", [(early, "retracement", 40, 48)])),
                 "--data-dir", str(user)]) == 0, capsys.readouterr().err
    assert len(pd.read_parquet(user / LABELED)) == 99
