import json

from moola.__main__ import main
from moola.config import DataConfig
from moola.data.dataset import check_data


def test_make_split_fixes_a_shuffled_kfold_split(data_folder, capsys):
    data_folder.split = {"train_idx": [0, 2, 4, 5, 7, 8, 9, 11, 12, 13, 14, 16, 18, 19], "val_idx": [1, 3, 6, 10, 15, 17]}
    root = data_folder.write()
    assert any("temporal" in str(p) for p in check_data(root, DataConfig())[1])
    assert main(["make-split", str(root), "--val-fraction", "0.3"]) == 0
    split = json.loads((root / "artifacts/splits/v1/fold_0.json").read_text())
    assert split == {"train_indices": list(range(14)), "val_indices": list(range(14, 20))}
    assert (root / "artifacts/splits/v1/fold_0.json.bak").is_file()
    assert check_data(root, DataConfig())[1] == []
    assert "by timestamp" in capsys.readouterr().out


def test_make_split_on_a_missing_folder_prints_a_clear_error(tmp_path, capsys):
    assert main(["make-split", str(tmp_path / "nowhere")]) == 2
    assert "train_clean.parquet: expected a parquet file, found no such file" in capsys.readouterr().err


def test_make_split_prints_class_counts_and_keeps_every_backup(data_folder, capsys):
    root = data_folder.write()
    split = root / "artifacts/splits/v1/fold_0.json"
    original = split.read_text()
    for _ in range(3):
        assert main(["make-split", str(root), "--val-fraction", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "class counts: train {'consolidation': 7, 'retracement': 7}, val {'consolidation': 3, 'retracement': 3}" in out
    backups = sorted(p.name for p in split.parent.glob("fold_0.json.bak*"))
    assert backups == ["fold_0.json.bak", "fold_0.json.bak.1", "fold_0.json.bak.2"]
    assert (split.parent / "fold_0.json.bak").read_text() == original  # the user's own split survives reruns


def test_make_split_refuses_a_val_block_of_one_class(data_folder, capsys):
    data_folder.labeled["label"] = ["consolidation", "retracement"] * 8 + ["consolidation"] * 4
    root = data_folder.write()
    before = (root / "artifacts/splits/v1/fold_0.json").read_text()
    assert main(["make-split", str(root), "--val-fraction", "0.2"]) == 2
    err = capsys.readouterr().err
    assert "val 0 row(s) of 'retracement'" in err and "--val-fraction" in err and "Nothing written" in err
    assert (root / "artifacts/splits/v1/fold_0.json").read_text() == before


def test_make_split_leaves_out_train_rows_that_share_bars_with_val(data_folder, capsys):
    from unit_tests.test_input_mistakes import history_windows

    data_folder.labeled["features"][13], data_folder.labeled["features"][14] = history_windows(2, 1)
    root = data_folder.write()
    assert main(["make-split", str(root), "--val-fraction", "0.3"]) == 0
    assert "left 1 train row(s) out of the split" in capsys.readouterr().out
    split = json.loads((root / "artifacts/splits/v1/fold_0.json").read_text())
    assert 13 not in split["train_indices"] and split["val_indices"] == list(range(14, 20))
    assert check_data(root, DataConfig())[1] == []


def test_report_says_how_many_problems_more_and_full_prints_them_all(tmp_path, capsys):
    from moola.results import append_line, build_line

    results = tmp_path / "r.jsonl"
    reason = "3 problem(s):\n- " + "\n- ".join(f"/home/trader/runs/2026-11/nq_windows/data/file{i}.parquet column 'features': expected finite values, "
                                             f"found NaN in rows {i} (1 in all). Fix: drop those windows" for i in range(3))
    append_line(results, build_line("0_verify_env", "failed", run_id="r", reason=reason))
    assert main(["report", str(results)]) == 0
    summary = capsys.readouterr().out
    assert "+2 more" in summary and f"python -m moola report {results} --full" in summary
    assert "file0.parquet" in summary and "file2.parquet" not in summary
    cut = "3 problem(s): " + summary.split("  3 problem(s): ")[1].split(" (+2 more")[0]
    whole = reason.replace("\n- ", " ")
    assert cut.endswith(" …") and len(cut) <= 162 and whole.startswith(cut[:-2])
    assert whole[len(cut) - 2] == " "  # cut at a word, not mid-word
    assert main(["report", str(results), "--full"]) == 0
    full = capsys.readouterr().out
    assert all(f"file{i}.parquet" in full for i in range(3))


def test_make_split_never_cuts_between_windows_of_one_timestamp(data_folder, capsys):
    import numpy as np
    import pandas as pd

    data_folder.labeled["timestamp"] = np.repeat(pd.date_range("2024-01-01", periods=4, freq="D").values, 5)
    root = data_folder.write()
    assert main(["make-split", str(root), "--val-fraction", "0.3"]) == 0  # 6 val rows would cut day 3 in two
    split = json.loads((root / "artifacts/splits/v1/fold_0.json").read_text())
    assert split["val_indices"] == list(range(10, 20)) and split["train_indices"] == list(range(10))
    assert check_data(root, DataConfig())[1] == []


def test_report_on_an_unknown_run_id_lists_the_runs(tmp_path, capsys):
    from moola.results import append_line, build_line

    results = tmp_path / "r.jsonl"
    append_line(results, build_line("0_verify_env", "passed", run_id="abc"))
    assert main(["report", str(results), "--run-id", "abd"]) == 2
    assert "expected a run with id 'abd', found runs abc" in capsys.readouterr().err
