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
