"""Gate rules under the point policy (the seed's) and the CI policy."""

import pytest

from moola.config import AugmentConfig
from moola.report.text import verdict
from moola.stages.rules import augment_failures, baseline_warning, control_failures, ensemble_warning, finetune_failures

METRICS = {"val_f1": 0.80, "majority_f1": 0.41, "val_pred_counts": [12, 8]}


def test_point_policy_compares_point_estimates():
    assert control_failures(0.70, 0.75) == []
    assert control_failures(0.75, 0.75)  # a tie does not beat the control
    assert finetune_failures(METRICS, 0.75, 2) == []
    assert finetune_failures({**METRICS, "val_pred_counts": [20, 0]}, 0.75, 2)  # one class only


def test_ci_policy_needs_the_interval_to_clear_zero():
    assert control_failures(0.70, 0.75, "ci", [-0.10, 0.20])  # better on the point, within noise
    assert control_failures(0.70, 0.75, "ci", [0.01, 0.20]) == []
    signal = {"balanced_acc": 0.8, "chance": 0.5, "delta": 0.3, "delta_ci95": [0.1, 0.5], "shift_p_value": 0.01}
    guessing = {"balanced_acc": 0.52, "chance": 0.5, "delta": 0.02, "delta_ci95": [-0.1, 0.14], "shift_p_value": 0.4}
    in_runs = {**signal, "shift_p_value": 0.2}  # a CI clear of 0 that rotations of the predictions also reach
    assert finetune_failures(METRICS, 0.75, 2, "ci", [0.02, 0.3], signal) == []
    # Under ci "learned anything" is balanced accuracy against chance, not macro F1 against a constant.
    assert "no signal beyond guessing" in finetune_failures(METRICS, 0.75, 2, "ci", [0.02, 0.3], guessing)[0]
    assert "circular-shift p = 0.200" in finetune_failures(METRICS, 0.75, 2, "ci", [0.02, 0.3], in_runs)[0]
    # At 20 rows the rotations cannot reach p < 0.05 (floor 1/18): the CI alone decides there.
    perfect_20 = {**signal, "shift_p_value": 1 / 18, "shift_p_floor": 1 / 18}
    assert finetune_failures(METRICS, 0.75, 2, "ci", [0.02, 0.3], perfect_20) == []
    assert "beyond noise" in finetune_failures(METRICS, 0.75, 2, "ci", [0.0, 0.3], signal)[0]
    # Every seed's pooled predictions must use every class.
    assert finetune_failures({**METRICS, "pred_classes_per_seed": [2, 1]}, 0.75, 2, "ci", [0.02, 0.3], signal)


def test_no_worse_than_rules_keep_specs_point_threshold_under_both_policies():
    numbers = {"n_synthetic": 40, "n_train": 78, "minimum": 20, "cap": 156, "min_quality": 0.9, "ks_min_p": 0.5, "ks_worst": "x",
               "duplicates": 0, "foreign_sources": [], "val_f1": 0.75, "finetune_f1": 0.80}
    assert augment_failures(numbers, AugmentConfig())  # point: 5 pp worse than gate 4
    # Non-inferiority cannot be shown at 98 rows and "harm shown" would loosen SPEC's 2 pp: the
    # point rule decides under ci too, its CI in the message.
    assert "95% CI" in augment_failures(numbers, AugmentConfig(), "ci", [-0.15, 0.05])[0]
    assert augment_failures({**numbers, "val_f1": 0.785}, AugmentConfig(), "ci", [-0.15, 0.05]) == []
    assert ensemble_warning(0.78, "m", 0.80, 0.01) is not None
    assert ensemble_warning(0.795, "m", 0.80, 0.01, "ci", [-0.1, 0.1]) is None
    assert ensemble_warning(0.78, "m", 0.80, 0.01, "ci", [-0.1, 0.05]) is not None


def test_advisory_baseline_rule_warns_when_the_gain_is_within_noise():
    assert baseline_warning(0.6, 0.8) is None
    assert baseline_warning(0.6, 0.8, "ci", [-0.05, 0.4]) is not None


@pytest.mark.parametrize("ci, words", [([0.01, 0.2], "better"), ([-0.2, -0.01], "worse"),
                                       ([-0.1, 0.1], "within noise"), ([0.0, 0.3], "within noise")])
def test_terminal_verdict_in_plain_words(ci, words):
    assert verdict(ci) == words


def test_gate_3_fails_an_encoder_that_reconstructs_no_better_than_the_mean():
    from moola.config import ThresholdConfig
    from moola.stages.rules import probe_failures

    probe = {"probe_balanced_acc": 0.79, "probe_random_balanced_acc": 0.875}
    assert probe_failures({**probe, "reconstruction_ratio": 0.35}, ThresholdConfig()) == []
    [failure] = probe_failures({**probe, "reconstruction_ratio": 1.02}, ThresholdConfig())
    assert "learned nothing" in failure and "0.875" in failure


def test_report_header_names_the_protocol_and_a_negative_control():
    from moola.report import format_run

    line = {"gate": "4_finetune_enhanced", "run_id": "r", "status": "failed", "reason": "no gain", "duration_s": 1.0,
            "metrics": {"val_f1": 0.9}, "comparison": {"delta": 0.04, "delta_ci95": [-0.01, 0.09], "policy": "ci"},
            "data": {"train_labels": "shuffled: every fold's train labels permuted"},
            "evaluation": {"description": "blocked, 5 folds in time order, embargo 1 row(s), 1 seed"}}
    header = format_run([line]).splitlines()[0]
    assert "evaluation blocked, 5 folds" in header and "NEGATIVE CONTROL" in header and "gate policy ci" in header
