"""--shuffle-labels: the train labels permuted before any training, everything else as it was."""

import numpy as np

from moola.stages.context import build_context, resolve_settings

from .conftest import DataFolder


def context(root, artifacts, shuffle_labels):
    return build_context(resolve_settings(root, data_dir=str(root), artifacts_dir=str(artifacts), results=None,
                                          device="cpu", profile="quick", overrides=[], seed=17, fresh=False,
                                          demo=False, shuffle_labels=shuffle_labels))


def test_shuffled_labels_permute_train_rows_only_and_models_go_elsewhere(tmp_path):
    root = DataFolder(tmp_path / "data", seed=1).write()
    shuffled, plain = context(root, tmp_path / "a", True), context(root, tmp_path / "a", False)
    train, val = plain.train, plain.val
    assert not np.array_equal(shuffled.dataset.y[train], plain.dataset.y[train])
    assert np.array_equal(np.sort(shuffled.dataset.y[train]), np.sort(plain.dataset.y[train]))  # same counts
    assert np.array_equal(shuffled.dataset.y[val], plain.dataset.y[val])  # scored rows keep their truth
    assert shuffled.models_dir == tmp_path / "a" / "negative_control" and plain.models_dir == tmp_path / "a"
    assert shuffled.line_context()["data"]["train_labels"].startswith("shuffled")
    assert plain.line_context()["data"]["train_labels"] == "as given"
