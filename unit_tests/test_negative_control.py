"""--shuffle-labels: every fold's train labels permuted before any training, everything else as it was."""

import numpy as np
import pytest

from moola.stages.context import build_context, resolve_settings

from .conftest import DataFolder


def context(root, artifacts, shuffle_labels, cv="blocked"):
    return build_context(resolve_settings(root, data_dir=str(root), artifacts_dir=str(artifacts), results=None,
                                          device="cpu", profile="quick", overrides=[f"evaluation.cv={cv}"], seed=17,
                                          fresh=False, demo=False, shuffle_labels=shuffle_labels))


@pytest.mark.parametrize("cv", ["holdout", "blocked", "walk-forward"])
def test_shuffled_labels_permute_each_fits_train_rows_only(tmp_path, cv):
    root = DataFolder(tmp_path / "data", seed=1, n_labeled=40).write()
    shuffled, plain = context(root, tmp_path / "a", True, cv), context(root, tmp_path / "a", False, cv)
    assert np.array_equal(shuffled.dataset.y, plain.dataset.y)  # the run's labels stay as given
    moved = 0
    for fold in shuffled.folds:
        view, truth = shuffled.for_fit(fold, 17), plain.for_fit(fold, 17).dataset.y
        train = fold.train
        moved += int((view.dataset.y[train] != truth[train]).sum())
        assert np.array_equal(np.sort(view.dataset.y[train]), np.sort(truth[train]))  # same counts
        assert np.array_equal(np.delete(view.dataset.y, train), np.delete(truth, train))  # scored rows keep their truth
        assert np.array_equal(shuffled.for_fit(fold, 18).dataset.y, view.dataset.y)  # one permutation for every seed
        assert shuffled.for_fit(fold, 18).seed == 18 and view.seed == 17  # the fit's seed is untouched
    assert moved > 0


def test_negative_control_models_go_elsewhere_and_lines_say_so(tmp_path):
    root = DataFolder(tmp_path / "data", seed=1).write()
    shuffled, plain = context(root, tmp_path / "a", True), context(root, tmp_path / "a", False)
    assert shuffled.models_dir == tmp_path / "a" / "negative_control" and plain.models_dir == tmp_path / "a"
    assert shuffled.line_context()["data"]["train_labels"].startswith("shuffled")
    assert plain.line_context()["data"]["train_labels"] == "as given"
