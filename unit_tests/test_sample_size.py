"""How many labeled windows would resolve the deciding comparison: the 1/√n forecast, the "not at any
plausible count" answer, and the ending's label-next steps."""

from __future__ import annotations

import pytest

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
    assert needed.half_width == pytest.approx(0.073)  # from the difference -0.039 to the bound nearer 0
    assert needed.windows_needed == 350 and needed.more == 252
    assert "about 350 labeled windows (~252 more with a class" in needed.text() and "about 710 for 80% odds" in needed.text()
    lopsided = deciding_comparison([_comparison(-0.112, 0.010)])  # difference -0.051, reach 0.061 toward 0
    assert lopsided.half_width == pytest.approx(0.061) and lopsided.windows_needed == 150
    tiny = deciding_comparison([_comparison(-0.07, 0.068)])
    assert tiny.windows_needed is None and "not resolved at any plausible count" in tiny.text()
    assert f"{PLAUSIBLE * 98} windows" in tiny.text()
    assert deciding_comparison([resolved]) is None


def test_the_forecast_counts_distinct_windows_not_rows():
    line = _comparison(-0.112, 0.034)
    line["data"] = {"n_windows": 66, "n_labeled": 98}  # the user's layout: rows share windows
    needed = deciding_comparison([line])
    assert needed.n_windows == 66 and needed.windows_needed == 240  # 66 x (0.073 / 0.039)^2 = 231


def test_the_ending_says_how_many_and_gives_label_next_and_add_labels():
    lines = run(("smoke", 0.85, 130.0), ("minirocket", 0.95, 3.0, "failed"))
    for gate in (3, 4, 5, 6, 7):
        lines.append(build_line(GATES[gate], "not_run", run_id="run1", reason="session stopped after gate 2 (-x)"))
    text = ending(lines, choose(lines), {"run_options": "--demo", "artifacts_dir": None, "results": None,
                                         "data_root": "data", "narrowed": False})
    # a --demo run labels a copy of the demo (its cache is what every --demo run reads)
    assert "[ -d my-data ] || python -m moola demo-data my-data; python -m moola label-next 20 --data-dir my-data" in text
    assert "python -m moola add-labels labels.csv --data-dir my-data && pytest gates -x --data-dir my-data" in text
    user = ending(lines, choose(lines), {"run_options": "--demo user-layout --seed 18", "artifacts_dir": None,
                                         "results": None, "data_root": "data", "narrowed": False})
    assert "demo-data my-data --layout user-layout --seed 18;" in user and "pytest gates -x --seed 18 --data-dir my-data" in user
    own = ending(lines, choose(lines), {"run_options": "--data-dir d --cv holdout", "artifacts_dir": None, "results": None,
                                        "data_root": "d", "narrowed": False})
    assert "label-next 20 --data-dir d\n" in own and "add-labels labels.csv --data-dir d --cv holdout && pytest gates -x --data-dir d --cv holdout" in own
    assert "label-next proposes pool windows that share no bars" in text
