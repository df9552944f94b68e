"""The real gates 0-2 end with a recommendation `predict` uses: gate 2's saved MiniRocket scores what
the session's refit scores. Marked slow: `pytest unit_tests --run-slow -m slow`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moola import artifacts
from moola.__main__ import main
from moola.data.dataset import LABELED, UNLABELED
from moola.data.normalize import normalize_windows
from moola.data.parquet import read_windows
from moola.deploy.model import load_deployed
from moola.models.minirocket import MiniRocketClassifier, score_proba

from .gate_runs import TINY, run_gates, small_demo

pytestmark = pytest.mark.slow

# gate 2 fails whatever the tiny models score, so -x stops there in a run of the whole suite
CONTROL_WINS = """
import moola.stages.rules as rules
rules.control_failures = lambda *args, **kwargs: ["injected: the control wins"]
"""


def test_a_run_stopped_at_gate_2_ends_with_the_control_and_predict_uses_it(pytester, tmp_path_factory, tmp_path,
                                                                          capsys):
    data = small_demo(tmp_path_factory)
    output = []
    lines = run_gates(pytester, data, "-x", plugin=CONTROL_WINS, name="select", output=output)
    line = lines["2_control_minirocket"]
    assert line["artifact"]["max_abs_diff_vs_session"] <= 1e-6 and line["artifact"]["rows_checked"] == 98
    path = pytester.path / "select" / "artifacts" / artifacts.MINIROCKET
    assert line["artifacts"]["model"] == str(path)
    text = output[0]
    assert "what happened" in text and "recommended model: minirocket" in text and "python -m moola predict" in text
    # a readable live log: one line per fit, the overfit check in one line, no epoch lines, no repeated capture
    before = text.split(" moola gates ")[0]
    assert "overfit check: train accuracy" in before and "minirocket_ridge fit 6/6, refit" in before
    assert " epoch " not in before.replace("pretrain epoch", "") and "Captured log" not in before
    assert before.count("\n") <= 40, before
    assert "Evaluation(" not in text and "CrossFitted(name=" not in text  # the rule's message, not reprs
    metadata = artifacts.load_checkpoint(path)[1]
    assert metadata["gate"]["deliverable"] is True and metadata["selected"]["recommended"]["model"] == "minirocket"

    # the file scores exactly what a refit of the same recipe (every labeled row, seed 17) scores
    table, problems = read_windows(data / LABELED, labeled=True)
    assert not problems
    deployed = load_deployed(path, "minirocket")
    y = np.array([deployed.classes.index(label) for label in table.labels])
    refit = MiniRocketClassifier(seed=17).fit(normalize_windows(table.features, shared_channels=True), y)
    expected = score_proba(refit.decision_function(normalize_windows(table.features, shared_channels=True)))
    np.testing.assert_allclose(deployed.predict_proba(table.features), expected, atol=1e-6)

    # CSV: pytester's module snapshots drop pandas' arrow extension module between tests, and a second
    # import of it fails to re-register its pyarrow types (a test-harness artefact, not moola's)
    out = tmp_path / "p.csv"
    assert main(["predict", str(data / UNLABELED), "--out", str(out), "--artifacts-dir", str(path.parents[1]),
                 "--results", str(pytester.path / "select" / "results.jsonl")]) == 0
    assert "recommended by moola select" in capsys.readouterr().out
    assert len(pd.read_csv(out)) == 1200


def test_when_x_stops_at_gate_2_gate_3_still_records_what_pretraining_did(pytester, tmp_path_factory):
    data = small_demo(tmp_path_factory)
    lines = run_gates(pytester, data, "-x", plugin=CONTROL_WINS, name="stopped")
    assert lines["2_control_minirocket"]["reason"] == "injected: the control wins"
    gate3 = lines["3_pretrain_bilstm"]
    assert gate3["status"] == "not_run" and "rule did not judge them" in gate3["unjudged"]
    assert gate3["history"] and gate3["metrics"]["pretrain_duration_s"] > 0
    assert 0 <= gate3["metrics"]["probe_balanced_acc"] <= 1 and gate3["metrics"]["reconstruction_ratio"] > 0
    # obtaining the encoder happened in gate 1's setup: its seconds are gate 3's, not gate 1's
    moved = lines["1_smoke_enhanced"]["duration_excludes"]["encoder_obtained_s"]
    assert moved > 0 and gate3["duration_s"] >= moved - 1e-3  # durations are rounded to ms
    assert lines["1_smoke_enhanced"]["metrics"]["cost"]["parts"]["pretraining"] > 0
    assert [lines[g]["status"] for g in ("4_finetune_enhanced", "7_ensemble")] == ["not_run", "not_run"]


# gate 4's rule fails whatever the tiny models score; -k augment / --start-gate 5 never runs gate 4 itself
GATE4_FAILS = """
import moola.stages.members as members
members.finetune_failures = lambda *args, **kwargs: ["injected: no gain over gate 1"]
"""


def test_a_narrowed_gate_5_is_not_judged_nor_delivered_when_gate_4s_rule_fails(pytester, tmp_path_factory, tmp_path,
                                                                              capsys):
    data = small_demo(tmp_path_factory)
    lines = run_gates(pytester, data, "--start-gate", "5", plugin=GATE4_FAILS, name="gate5",
                      overrides=[*TINY, "thresholds.gate_policy=point"])
    line = lines["5_augment_train"]
    assert line["status"] == "skipped" and "gate 4's rule fails" in line["reason"], (line["status"], line["reason"])
    assert line["requires"]["4_finetune_enhanced"] == {"holds": False, "failures": ["injected: no gain over gate 1"],
                                                       "on": "this session's numbers"}
    budget = line["metrics"]["step_budget"]  # recorded whatever the verdict
    assert budget["gate5_steps"] > budget["gate4_steps"] and budget["epochs"] == 8
    assert line["metrics"]["refit"]["check"]["steps"]["refit"] > 0
    path = pytester.path / "gate5" / "artifacts" / artifacts.AUGMENTED
    gate = artifacts.load_checkpoint(path)[1]["gate"]
    assert gate["status"] == "skipped" and gate["deliverable"] is False and not gate["requires"]["4_finetune_enhanced"]["holds"]
    assert main(["predict", str(data / UNLABELED), "--out", str(tmp_path / "p.csv"), "--model", "augmented",
                 "--artifacts-dir", str(path.parents[1]), "--results", str(pytester.path / "gate5" / "results.jsonl")]) == 2
    assert "gate 5_augment_train skipped" in capsys.readouterr().err
