"""The labeling simulation's oracle (the demo generator's truth) and one tiny end-to-end round."""

from __future__ import annotations

import numpy as np
import pytest

from moola.data import demo
from moola.labeling.propose import STRATEGIES
from moola.labeling.simulate import NEITHER, TOLERANCE, oracle_labels, simulate, summarise


def test_the_oracle_names_the_class_of_an_aligned_pattern_and_neither_elsewhere():
    truth = {"event_starts": np.array([100, 400]), "event_labels": np.array([1, 0]),
             "pool_starts": np.array([0, 100 - TOLERANCE, 100 + TOLERANCE + 1, 390, 410, 700])}
    assert oracle_labels(truth).tolist() == [NEITHER, 1, NEITHER, 0, 0, NEITHER]


def test_the_demos_pool_windows_are_mostly_neither_and_its_labeled_windows_their_own_class():
    tables = demo.generate(17, 2000)
    answer = oracle_labels(tables["truth"])
    share = float((answer != NEITHER).mean())
    assert 0.05 < share < 0.3, share  # events every ~160 bars, windows every 20: most answer neither
    starts = tables["truth"]["event_starts"][: demo.N_TRAIN + demo.N_VAL]  # the labeled windows come first
    labels = tables["truth"]["event_labels"][: demo.N_TRAIN + demo.N_VAL]
    names = np.array(["consolidation", "retracement"])[labels]
    assert names.tolist() == list(tables["labeled"]["label"]) and len(starts) == demo.N_TRAIN + demo.N_VAL


@pytest.mark.slow
def test_a_tiny_simulation_runs_every_strategy_and_reports_paired_differences():
    rows = simulate(seeds=(17, 18), budgets=(6,), n_unlabeled=1500, resamples=100, log=lambda line: None)
    assert {(r["strategy"], r["budget"]) for r in rows} == {(s, b) for s in STRATEGIES for b in (0, 6)}
    start = [r for r in rows if r["budget"] == 0]
    assert len({(r["seed"], r["rows"], r["test_f1"]) for r in start}) == 2  # every strategy starts alike per seed
    after = [r for r in rows if r["budget"] == 6]
    assert all(r["rows"] + r["neither"] == 98 + 6 and r["distinct_asked"] == 6 for r in after)
    summary = summarise(rows)
    margin = next(e for e in summary if e["strategy"] == "margin-diverse" and e["budget"] == 6)
    low, high = margin["test_f1_vs_random"][1:]
    assert low <= margin["test_f1_vs_random"][0] <= high
