"""The seed's workflow copies the code to the pod without `.git`: in such a copy, a later narrowed
run that re-saves the recommended file after a doc edit leaves `predict` working; after an edit
under `moola/training` it makes `predict` refuse. Marked slow (three real gate runs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from moola.data.dataset import UNLABELED
from moola.results import read_lines

from .gate_runs import REPO, TINY, small_demo

pytestmark = pytest.mark.slow

CONTROL_WINS = """
import moola.stages.rules as rules
rules.control_failures = lambda *args, **kwargs: ["injected: the control wins"]
"""
COPIED = ("moola", "gates", "conftest.py", "pytest.ini", "docs", "README.md", "pyproject.toml")


def copy_repo(target):
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, target / name)
    (target / "control_wins.py").write_text(CONTROL_WINS)
    return target


def in_copy(copy, *command, check=True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(copy), "NUMBA_CACHE_DIR": str(REPO / ".numba_cache")}
    done = subprocess.run([sys.executable, *command], cwd=copy, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    if check:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def gates(copy, data, *args) -> None:
    overrides = [word for override in TINY for word in ("--set", override)]
    # the default blocked folds score all 98 rows: select's signal test (the ci test under any policy)
    # cannot show signal on the holdout's 20 val rows, and predict needs a recommended model
    in_copy(copy, "-m", "pytest", "gates", "-p", "control_wins", "-p", "no:cacheprovider", "--gate-policy", "point",
            "--data-dir", str(data),
            "--artifacts-dir", "artifacts", "--results", "results.jsonl", *overrides, *args, check=False)


def predict(copy, data) -> subprocess.CompletedProcess:
    return in_copy(copy, "-m", "moola", "predict", str(data / UNLABELED), "--out", "p.parquet",
                   "--artifacts-dir", "artifacts", "--results", "results.jsonl", check=False)


def test_in_a_copy_without_git_a_doc_edit_keeps_predict_working_and_a_code_edit_makes_it_refuse(tmp_path,
                                                                                               tmp_path_factory):
    data = small_demo(tmp_path_factory)
    copy = copy_repo(tmp_path / "repo")
    assert not (copy / ".git").exists()
    assert in_copy(copy, "-c", "import moola; print(moola.__file__)").stdout.strip().startswith(str(copy))

    gates(copy, data, "-x")  # stops at gate 2 (injected); select recommends the control
    [first] = {line["run_id"] for line in read_lines(copy / "results.jsonl")}
    assert predict(copy, data).returncode == 0

    (copy / "docs" / "gates.md").write_text("edited\n")
    (copy / "README.md").write_text("edited\n")
    gates(copy, data, "--start-gate", "2", "--end-gate", "2")  # re-saves gate 2's file
    done = predict(copy, data)
    assert done.returncode == 0, done.stderr
    assert "with the same recipe and verdict" in done.stdout and f"for run {first}" in done.stdout

    with open(copy / "moola" / "training" / "classifier.py", "a") as handle:
        handle.write("# an edit\n")
    gates(copy, data, "--start-gate", "2", "--end-gate", "2")
    done = predict(copy, data)
    assert done.returncode == 2
    assert "code version (a digest of the moola package's and the gates' source)" in done.stderr and "Fix:" in done.stderr
