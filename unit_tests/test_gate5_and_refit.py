"""Gate 5 judges added rows (never zero of them), its model is delivered only beside gate 4's rule,
and a saved refit trains like the scored fits and is checked against them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from moola.artifacts import load_checkpoint, mark_gate, save_checkpoint
from moola.deploy.model import approval
from moola.deploy.select import choose
from moola.results import GATES
from moola.stages import augmented, classifiers
from moola.stages.context import build_context, resolve_settings
from moola.stages.protocol import cross_fit_stage
from moola.training.batches import batch_bounds, batch_for_steps

from .conftest import DataFolder
from .gate_runs import TINY
from .test_select import run as select_run

SMALL = [*TINY, "evaluation.folds=4", "evaluation.seeds=1"]


def context(tmp_path: Path, *overrides):
    root = DataFolder(tmp_path / "data", n_labeled=40, n_unlabeled=40).write()
    settings = resolve_settings(root, data_dir=str(root), artifacts_dir=str(tmp_path / "artifacts"), results=None,
                                device="cpu", profile="quick", overrides=[*SMALL, *overrides], seed=17, fresh=False,
                                demo=False)
    return build_context(settings)


def finetune_stage(ctx):
    return cross_fit_stage(ctx, "enhanced_simple_lstm", lambda view: classifiers.run_finetune(view, None),
                           plan=classifiers.finetune_steps)


def stages(ctx):
    finetuned = finetune_stage(ctx)
    augmented_run = cross_fit_stage(ctx, "enhanced_simple_lstm_augmented",
                                    lambda view, samples: augmented.run_augmented(view, samples, None),
                                    prepare=lambda view: augmented.pseudo_samples(view, finetuned),
                                    plan=classifiers.finetune_steps)
    return finetuned, augmented_run


# slow (4 s): trains gate 4 and gate 5's fits; CI runs it with the slow set
@pytest.mark.slow
def test_gate5_fails_when_no_synthetic_row_survives_the_filters_and_says_which_filter(tmp_path):
    # quality 1.0 needs a candidate whose return distribution equals its source's and a model sure of
    # its label: none survives. The augmented fit is then gate 4's fit, and "no worse" would hold by itself.
    ctx = context(tmp_path, "augment.quality_threshold=1.0")
    finetuned, augmented_run = stages(ctx)
    failures, verdict = augmented.augment_verdict(ctx, augmented_run, finetuned)
    assert all(fit["n_synthetic"] == 0 for fit in verdict["per_fit"])
    assert augmented_run.val_f1 == finetuned.val_f1  # the vacuous comparison the rule must not pass
    too_few = [f for f in failures if "synthetic rows < minimum" in f]
    assert len(too_few) == len(verdict["per_fit"]), failures  # every fit, the saved model's included
    assert "generated" in too_few[0] and "quality 0" in too_few[0] and "augment.min_ratio 0.25" in too_few[0]


def test_gate5_trains_gate4s_schedule_over_the_added_rows(tmp_path):
    ctx = context(tmp_path)
    view = ctx.for_fit(ctx.folds[0], ctx.seed)
    real = classifiers.run_finetune(view, None)
    rng = np.random.default_rng(0)
    extra = ctx.windows[view.train] + rng.normal(0, 0.05, ctx.windows[view.train].shape).astype(np.float32)
    more = classifiers.run_finetune(view, None, extra, ctx.dataset.y[view.train])
    phases = lambda trained: [h["phase"] for h in trained.history]
    assert phases(more) == phases(real)  # the same phases, epoch for epoch: the same SWA snapshots
    assert more.extra["epochs"] == real.extra["epochs"]
    rows = len(view.train)
    assert more.extra["steps_per_epoch"] == len(batch_bounds(2 * rows, 8))  # the rows differ, so the steps do
    assert real.extra["steps_per_epoch"] == len(batch_bounds(rows, 8))


@pytest.mark.slow  # trains the scored fits and the refit (~2.3 s): CI's slow set
def test_the_refit_takes_the_scored_fits_steps_and_records_a_check_against_them(tmp_path):
    ctx = context(tmp_path)
    finetuned = finetune_stage(ctx)
    fits = list(finetuned.fits.values())
    final = finetuned.final
    assert final.extra["epochs"] == fits[0].extra["epochs"]
    target = round(np.mean([fit.extra["steps_per_epoch"] for fit in fits]))
    assert final.extra["steps_per_epoch"] == target and final.extra["batch_size"] > 8  # 40 rows, not 30, per epoch
    check = final.extra["refit_check"]
    assert check["pooled_rows"]["rows"] == len(finetuned.evaluation.rows) and 0 <= check["pooled_rows"]["agreement"] <= 1
    assert check["unlabeled"]["rows"] == 40 and "fold models" in check["unlabeled"]["against"]
    assert check["steps"]["refit"] == final.extra["total_steps"]
    _, metadata = load_checkpoint(final.artifact)  # the saved file carries the check and its schedule
    assert metadata["refit_check"] == check
    assert metadata["schedule"]["steps_per_epoch"] == target and "scored fits" in metadata["schedule"]["steps_matched_to"]


@pytest.mark.parametrize(("rows", "steps", "expected"), [(98, 10, 10), (78, 10, 8), (81, 10, 8), (5, 1, 4)])
def test_batch_for_steps_cuts_the_rows_into_that_many_batches(rows, steps, expected):
    assert batch_for_steps(rows, steps) == expected and len(batch_bounds(rows, expected)) == steps


def augmented_file(tmp_path: Path) -> Path:
    return save_checkpoint(tmp_path / "a.pt", {"w": torch.zeros(1)},
                           {"gate": {"gate": GATES[5], "status": "pending", "run_id": "r"}})


@pytest.mark.parametrize(("requires", "deliverable"), [
    (None, False),  # gate 4's rule not judged on this run's numbers (e.g. --start-gate 5 before this check)
    ({GATES[4]: {"holds": False, "failures": ["val_f1 0.70 <= smoke 0.75"]}}, False),
    ({GATES[4]: {"holds": True, "failures": []}}, True),
])
def test_the_augmented_model_is_deliverable_only_when_gate_4s_rule_held(tmp_path, requires, deliverable):
    path = augmented_file(tmp_path)
    assert mark_gate(path, "r", "passed", None, requires=requires)
    _, metadata = load_checkpoint(path)
    assert metadata["gate"]["deliverable"] is deliverable
    assert approval(metadata, "augmented")[0] is deliverable


def test_predict_refuses_an_augmented_file_marked_deliverable_without_gate_4s_rule(tmp_path):
    # a file written by an earlier moola, or edited: "deliverable" alone is not enough
    metadata = {"gate": {"gate": GATES[5], "status": "passed", "run_id": "r", "deliverable": True}}
    approved, said = approval(metadata, "augmented")
    assert not approved and "4_finetune_enhanced" in said


def test_select_never_recommends_the_augmented_model_without_gate_4s_rule_on_the_same_run():
    lines = select_run(("finetuned", 0.70, 100.0, "failed"), ("augmented", 0.97, 150.0))
    lines = [line for line in lines if line["gate"] != GATES[4]]  # a narrowed run: -k augment
    lines[-1]["requires"] = {GATES[4]: {"holds": False, "failures": ["no gain over gate 1"]}}
    selection = choose(lines)
    [entry] = [r for r in selection.ranked if r.name == "augmented"]
    assert not entry.candidate and "no gain over gate 1" in entry.why_not
    del lines[-1]["requires"]
    [entry] = [r for r in choose(lines).ranked if r.name == "augmented"]
    assert not entry.candidate and "not recorded" in entry.why_not


@pytest.mark.parametrize(("rows", "reachable"), [(20, False), (22, False), (23, True), (98, True)])
def test_the_circular_shift_test_can_reach_p_below_005_from_23_rows(rows, reachable):
    # docs/evaluation.md states this threshold; the rule skips the test below it (shift_p_floor)
    from moola.evaluation.crossfit import shift_offsets
    from moola.stages.rules import SHIFT_ALPHA

    assert (1 / (1 + len(shift_offsets(rows))) < SHIFT_ALPHA) is reachable


def test_predict_says_an_ensembles_calibration_is_the_recipes():
    from moola.deploy.model import Deployed
    from moola.deploy.predict import calibration_note
    from moola.stages.deliverable import CALIBRATION

    ensemble = Deployed("ensemble", [], ["a", "b"], {}, {"calibration": CALIBRATION})
    assert calibration_note(ensemble) == [f"calibration: {CALIBRATION}"] and "not the refit's" in CALIBRATION
    assert calibration_note(Deployed("finetuned", [], ["a", "b"], {}, {})) == []


def test_the_refit_check_counts_agreement_and_drift_exactly_and_the_report_prints_them():
    from types import SimpleNamespace

    from moola.evaluation.crossfit import Evaluation
    from moola.report.text import refit_texts
    from moola.stages.refit import refit_check

    y = np.array([0, 1, 0, 1])
    oof = np.array([[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]]])  # (S=1, n, K), rows 2 and 3 in order
    ev = Evaluation("m", np.array([0, 1, 2, 3]), y, np.array([0, 0, 1, 1]), (17,), oof)
    refit = SimpleNamespace(val_proba=np.array([[0.8, 0.2], [0.2, 0.8], [0.3, 0.7], [0.3, 0.7]]), model=None,
                            extra={})
    ctx = SimpleNamespace(settings=SimpleNamespace(seed=17), dataset=SimpleNamespace(unlabeled=SimpleNamespace(
        features=np.zeros((0, 3, 4)))))
    pooled = refit_check(ctx, ev, {}, refit)["pooled_rows"]
    assert pooled["agreement"] == 0.75  # row 2 flips
    assert pooled["mean_abs_prob_diff"] == pytest.approx((0.1 + 0 + 0.3 + 0) / 4)
    assert pooled["max_abs_prob_diff"] == pytest.approx(0.3)
    assert pooled["refit_accuracy"] == 0.75 and pooled["out_of_fold_accuracy"] == 1.0
    line = {"gate": GATES[4], "metrics": {"refit": {"check": {"pooled_rows": pooled}}}}
    assert refit_texts([line]) == [(f"{GATES[4]}: saved refit vs its fold models: class agreement 0.75 on 4 labeled "
                                   "rows (refit in-sample), mean |dp| 0.100")]


def test_select_accepts_a_line_without_the_record_when_gate_4_passed_in_the_same_run():
    lines = select_run(("finetuned", 0.90, 100.0), ("augmented", 0.97, 150.0))
    del lines[-1]["requires"]  # a line written before moola recorded gate 4's rule beside gate 5's
    [entry] = [r for r in choose(lines).ranked if r.name == "augmented"]
    assert entry.candidate, entry.why_not


def test_a_minimum_the_cap_can_never_reach_is_refused_at_start(tmp_path):
    with pytest.raises(ValueError, match="augment.min_ratio"):
        context(tmp_path, "augment.min_ratio=3.0")


def test_a_refit_never_trains_one_row_a_batch(tmp_path):
    import dataclasses

    ctx = dataclasses.replace(context(tmp_path), steps_per_epoch=50)
    assert ctx.batch_size(8, 40) == 2
