"""How many labeled windows would resolve the deciding comparison: the 1/√n forecast, the "not at any
plausible count" answer, and the ending's label-next steps."""

from __future__ import annotations

from moola.deploy.select import choose
from moola.evaluation.sample_size import PLAUSIBLE, deciding_comparison, windows_needed
from moola.report.ending import ending
from moola.results import GATES, build_line
from unit_tests.test_select import run


def test_the_forecast_scales_the_half_width_as_one_over_root_n():
    assert windows_needed(-0.039, 0.073, 98) == 350  # 98 x (0.073 / 0.039)^2 = 343, rounded up to tens
    assert windows_needed(0.05, 0.05, 98) == 100  # already at the edge
    assert windows_needed(0.001, 0.07, 98) is None  # 4,900x the windows: not at any plausible count
    assert windows_needed(0.0, 0.07, 98) is None


def _comparison(lo: float, hi: float, cv: str = "blocked", n_scored: int = 98) -> dict:
    line = build_line(GATES[2], "failed", run_id="r")
    line["comparison"] = {"delta": (lo + hi) / 2, "delta_ci95": [lo, hi], "ci_half_width": (hi - lo) / 2,
                          "candidate_gate": GATES[1], "baseline_gate": GATES[2]}
    line["metrics"] = {"n_scored": n_scored}
    line["data"] = {"n_windows": 98, "n_labeled": 98}
    line["evaluation"] = {"cv": cv}
    return line


def test_the_deciding_comparison_is_the_first_unresolved_one_and_says_how_many_windows():
    resolved = _comparison(0.01, 0.09)
    resolved["gate"] = GATES[1]
    needed = deciding_comparison([resolved, _comparison(-0.112, 0.034)])
    assert needed.gate == GATES[2] and needed.what == "smoke − minirocket"
    assert needed.windows_needed == 350 and needed.more == 252
    assert "about 350 windows (~252 more)" in needed.text()
    tiny = deciding_comparison([_comparison(-0.07, 0.068)])
    assert tiny.windows_needed is None and "not resolved at any plausible count" in tiny.text()
    assert f"{PLAUSIBLE * 98} windows" in tiny.text()
    assert deciding_comparison([resolved]) is None


def test_under_holdout_the_val_rows_narrow_the_ci_and_every_labeled_window_counts():
    blocked = deciding_comparison([_comparison(-0.112, 0.034)]).windows_needed
    holdout = deciding_comparison([_comparison(-0.112, 0.034, cv="holdout", n_scored=20)]).windows_needed
    assert holdout == blocked  # 20 val rows of 98: the CI narrows with them, a fixed share of every window


def test_the_ending_says_how_many_and_gives_label_next_and_add_labels():
    lines = run(("smoke", 0.85, 130.0), ("minirocket", 0.95, 3.0, "failed"))
    for gate in (3, 4, 5, 6, 7):
        lines.append(build_line(GATES[gate], "not_run", run_id="run1", reason="session stopped after gate 2 (-x)"))
    text = ending(lines, choose(lines), {"run_options": "--demo", "artifacts_dir": None, "results": None,
                                         "data_root": "data", "narrowed": False})
    assert "python -m moola label-next 20 --data-dir data" in text
    assert "python -m moola add-labels labels.csv --data-dir data && pytest gates -x --demo" in text
    assert "label-next proposes pool windows that share no bars" in text
