"""Gate 5's pseudo-sample pipeline and gate 7's calibrated ensemble keep their promises."""

from types import SimpleNamespace

import numpy as np
import pytest

from moola.config import AugmentConfig, Profile
from moola.data.normalize import normalize_windows
from moola.stages.classifiers import Trained
from moola.stages.ensemble import run_ensemble
from moola.stages.rules import augment_failures
from moola.training import pseudo
from moola.training.metrics import macro_f1
from moola.training.pseudo import GENERATORS, generate_candidate, make_pseudo_samples, ohlc_valid, synthetic_cap
from unit_tests.conftest import ohlc_windows


def confident(windows):
    """A stand-in gate-4 model that gives every inherited label probability 1."""
    return np.full((len(windows), 2), 1.0)


def real_rows(n, seed=0, n_bars=40):
    return normalize_windows(ohlc_windows(np.random.default_rng(seed), n, n_bars))


@pytest.mark.parametrize("n_train", [10, 78, 200])
def test_cap_and_ratio_hold_in_the_pipeline(n_train):
    train = real_rows(n_train)
    samples = make_pseudo_samples(train, np.arange(n_train) % 2, real_rows(5, seed=1), confident,
                                  AugmentConfig(), True, 17)
    assert len(samples.y) <= synthetic_cap(n_train, AugmentConfig()) == min(2 * n_train, 210)
    assert samples.counts["capped"] == len(samples.y)


def test_synthetic_rows_derive_from_train_rows_and_never_copy_held_out_rows():
    train, held_out = real_rows(20), real_rows(6, seed=3)
    y = np.arange(20) % 2
    samples = make_pseudo_samples(train, y, held_out, confident, AugmentConfig(), True, 17)
    assert samples.provenance
    for row, label in zip(samples.provenance, samples.y):
        assert all(0 <= r < 20 and y[r] == label for r in row["source_rows"])
    distances = np.sqrt(((samples.windows[:, None] - held_out[None]) ** 2).mean(axis=(2, 3)))
    assert distances.min() >= pseudo.NEAR_DUPLICATE_RMS


@pytest.mark.parametrize("generator", GENERATORS)
def test_every_generator_keeps_shape_and_gives_valid_ohlc_after_repair(generator):
    train = real_rows(2)
    window, params = generate_candidate(np.random.default_rng(0), generator, train[0], train[1])
    assert window.shape == train[0].shape and isinstance(params, dict)
    assert ohlc_valid(pseudo.repair_ohlc(window[None]))[0]


def test_near_copies_of_train_rows_are_removed(monkeypatch):
    monkeypatch.setattr(pseudo, "generate_candidate",
                        lambda rng, generator, source, partner: (source + rng.normal(0, 1e-4, source.shape),
                                                                 {"near": True}))
    samples = make_pseudo_samples(real_rows(12), np.arange(12) % 2, real_rows(3, 1), confident,
                                  AugmentConfig(), True, 17)
    assert samples.counts["quality"] > 0 and samples.counts["near_dedup"] == 0 and len(samples.y) == 0


def test_a_generator_shifted_off_the_distribution_fails_the_ks_check(monkeypatch):
    def noisy(rng, generator, source, partner):  # rough, range-blown windows the real rows never show
        return source + rng.normal(0, 0.6, source.shape), {"shifted": True}

    monkeypatch.setattr(pseudo, "generate_candidate", noisy)
    config = AugmentConfig(quality_threshold=0.0)  # let everything through to reach the KS check
    samples = make_pseudo_samples(real_rows(40), np.arange(40) % 2, real_rows(4, 1), confident,
                                  config, True, 17)
    assert min(s["p_value"] for s in samples.ks.values()) < config.ks_alpha
    numbers = {"n_synthetic": len(samples.y), "n_train": 40, "minimum": 10, "cap": 80, "min_quality": 0.9,
               "ks_min_p": min(s["p_value"] for s in samples.ks.values()), "ks_worst": "close_change_std",
               "duplicates": 0, "foreign_sources": [], "val_f1": 0.8, "finetune_f1": 0.8}
    assert any("KS p-value" in failure for failure in augment_failures(numbers, config))


def fake_context(y, val, test=()):
    return SimpleNamespace(profile=Profile(), dataset=SimpleNamespace(y=np.asarray(y), split=SimpleNamespace(
        test=np.asarray(test, dtype=np.int64))), val=np.asarray(val), test=np.asarray(test, dtype=np.int64),
        n_classes=2, seed=17)


def member(name, val_proba, test_proba=None):
    return Trained(name, None, np.asarray(val_proba, float), {}, test_proba)


def test_one_member_is_reported_as_not_averaged():
    y = np.array([0, 1] * 10)
    proba = np.eye(2)[y] * 0.7 + 0.15
    report = run_ensemble(fake_context(y, np.arange(20)), {"only": member("only", proba)}, ["only"])
    assert report["n_members"] == 1 and report["averaged"] is False and report["members_used"] == ["only"]


def test_with_test_rows_calibration_is_fitted_on_val_and_scored_on_test():
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 15)
    val, test = np.arange(20), np.arange(20, 30)
    proba = np.clip(np.eye(2)[y] * 0.5 + rng.uniform(0, 0.5, (30, 2)), 0, None)
    proba /= proba.sum(1, keepdims=True)
    report = run_ensemble(fake_context(y, val, test), {"a": member("a", proba[val], proba[test]),
                                                       "b": member("b", proba[val][::-1].copy(), proba[test])}, ["a", "b"])
    assert report["scored_on"].startswith("test rows")
    assert report["members"]["a"]["f1"] == pytest.approx(macro_f1(y[test], proba[test].argmax(1), 2))


def members_with(monkeypatch, members: tuple, gate4_failures=(), gate5_failures=(), refit_checks=None):
    """`choose_members` with gate 4's and gate 5's rules stubbed to the given failures (and each
    member's saved refit with the given `refit_check`, by name)."""
    from moola.config import EnsembleConfig
    from moola.stages import members as module

    monkeypatch.setattr(module, "finetune_verdict", lambda ctx, finetuned, smoke: (list(gate4_failures), {}, {}))
    monkeypatch.setattr(module, "augment_verdict", lambda ctx, augmented, finetuned: (list(gate5_failures), {}))
    ctx = SimpleNamespace(profile=Profile(ensemble=EnsembleConfig(members=members)))
    checks = refit_checks or {}
    stages = {name: SimpleNamespace(name=name, final=SimpleNamespace(extra={"refit_check": checks.get(name)}))
              for name in ("finetuned", "augmented", "baseline", "minirocket")}
    return module.choose_members(ctx, stages, smoke=None)


def test_a_member_whose_refit_strays_from_its_fold_models_is_left_out_with_its_agreement(monkeypatch):
    strayed = {"unlabeled": {"rows": 256, "agreement": 0.7}}
    chosen, left_out = members_with(monkeypatch, ("finetuned", "augmented"), refit_checks={"augmented": strayed})
    assert list(chosen) == ["finetuned"]
    assert "agrees with its fold models on 70% of 256 pool windows" in left_out["augmented"]


def test_default_members_are_the_gate4_and_gate5_models_never_the_baseline(monkeypatch):
    chosen, left_out = members_with(monkeypatch, ("finetuned", "augmented"))
    assert list(chosen) == ["finetuned", "augmented"]
    assert left_out["baseline"].startswith("not in ensemble.members") and "minirocket" in left_out


def test_a_member_whose_gate_rule_fails_is_left_out_with_the_rule(monkeypatch):
    chosen, left_out = members_with(monkeypatch, ("finetuned", "augmented"), gate5_failures=["val_f1 0.70 < 0.75"])
    assert list(chosen) == ["finetuned"] and left_out["augmented"] == "gate 5_augment_train: val_f1 0.70 < 0.75"
    chosen, left_out = members_with(monkeypatch, ("finetuned", "augmented"), gate4_failures=["delta CI crosses 0"])
    assert chosen == {} and "gate 4_finetune_enhanced: delta CI crosses 0" in left_out["augmented"]


def test_baseline_and_minirocket_join_only_when_configured(monkeypatch):
    chosen, _ = members_with(monkeypatch, ("baseline", "minirocket", "finetuned"))
    assert list(chosen) == ["baseline", "minirocket", "finetuned"]  # the configured order


def test_comparison_models_are_never_delivered_without_an_approved_candidate(monkeypatch):
    chosen, left_out = members_with(monkeypatch, ("finetuned", "baseline", "minirocket"),
                                    gate4_failures=["delta CI crosses 0"])
    assert chosen == {} and "joins only beside an approved candidate" in left_out["baseline"]


def test_the_deployed_calibrator_is_fitted_on_every_seeds_out_of_fold_rows_with_their_labels():
    from moola.evaluation.crossfit import Evaluation
    from moola.stages.deliverable import calibration_rows

    rows, y = np.array([4, 5, 0, 1, 2, 3]), np.array([1, 0, 0, 1, 1, 0, 1])  # labels of labeled rows 0..6
    fold_of = np.array([1, 1, 0, 0, 0, 1])
    proba = np.random.default_rng(0).dirichlet([1, 1], size=(2, 6))  # (S=2 seeds, n=6, K=2)
    ev = Evaluation("m", rows, y[rows], fold_of, (17, 18), proba)
    folds = [SimpleNamespace(index=0), SimpleNamespace(index=1)]
    permuted = {0: y.copy(), 1: 1 - y}  # fold 1's fits saw flipped labels (as under --shuffle-labels)
    ctx = SimpleNamespace(holdout=False, folds=folds, settings=SimpleNamespace(seed=17),
                          for_fit=lambda fold, seed: SimpleNamespace(dataset=SimpleNamespace(y=permuted[fold.index])))
    fitted_proba, fitted_y, where = calibration_rows(ctx, "finetuned", SimpleNamespace(evaluation=ev))
    np.testing.assert_array_equal(fitted_proba, proba.reshape(12, 2))  # seed-major, as the labels below
    seen = np.where(fold_of == 1, 1 - y[rows], y[rows])
    np.testing.assert_array_equal(fitted_y, np.tile(seen, 2))
    assert "6 rows x 2 seed(s)" in where
