"""Each gate's pass rule as a pure function of its numbers: a list of failures (empty = pass).

The gate modules assert on these lists; gate 7 uses them to pick the models that passed their
own gate in this session. Every message carries the numbers it compared.
"""

from __future__ import annotations

import numpy as np

from moola.config import AugmentConfig, ThresholdConfig


def smoke_failures(match: dict, thresholds: ThresholdConfig, overfit: dict | None = None) -> list[str]:
    failures = []
    if overfit is not None and overfit["overfit_train_acc"] < overfit["overfit_target_acc"]:
        failures.append(
            f"overfit check: train accuracy {overfit['overfit_train_acc']:.3f} < {overfit['overfit_target_acc']} on "
            f"{overfit['overfit_rows']} rows after {overfit['overfit_steps']} full-batch steps: the pipeline cannot "
            "learn (unnormalised/saturated inputs, a detached graph or frozen weights?)")
    ratio = match.get("encoder_match_ratio")
    if ratio is not None and ratio < thresholds.encoder_match_ratio:
        failures.append(f"encoder match ratio {ratio:.2f} < {thresholds.encoder_match_ratio:.2f} "
                        f"({match['encoder_matched']}/{match['encoder_tensors']} encoder tensors loaded; "
                        f"missing {match['encoder_missing'][:3]}, shape mismatch {match['encoder_shape_mismatch'][:3]})")
    return failures


POLICIES = ("point", "ci")


def _ci_text(ci) -> str:
    return f"95% CI [{ci[0]:+.3f}, {ci[1]:+.3f}]"


def _not_above(ci, margin: float = 0.0) -> bool:
    """Under --gate-policy ci: the CI's lower bound does not clear `margin`."""
    return ci[0] <= margin


def control_failures(minirocket_f1: float, smoke_f1: float, policy: str = "point", ci=None) -> list[str]:
    """`ci`: bootstrap CI of smoke − MiniRocket macro F1."""
    if policy == "ci":
        if _not_above(ci):
            return [(f"smoke − MiniRocket val_f1 {smoke_f1 - minirocket_f1:+.3f}, {_ci_text(ci)} does not exclude 0 "
                     "(--gate-policy ci): the pretrained LSTM is not shown to beat the classical control")]
        return []
    if minirocket_f1 >= smoke_f1:
        return [(f"MiniRocket val_f1 {minirocket_f1:.3f} >= smoke EnhancedSimpleLSTM val_f1 {smoke_f1:.3f}: "
                 "the pretrained LSTM does not beat the classical control")]
    return []


def probe_failures(probe: dict, thresholds: ThresholdConfig) -> list[str]:
    """`probe`: probe and random-control balanced accuracy, and (when checked) the reconstruction ratio."""
    failures = []
    score, control = probe["probe_balanced_acc"], probe["probe_random_balanced_acc"]
    if score < thresholds.probe_balanced_acc:
        failures.append(f"linear probe balanced accuracy {score:.3f} < {thresholds.probe_balanced_acc:.2f} "
                        f"(random-encoder control {control:.3f}): encoder too weak for transfer")
    ratio = probe.get("reconstruction_ratio")
    if ratio is not None and ratio > thresholds.reconstruction_ratio:
        failures.append(f"reconstruction of masked bars of real train windows: error {ratio:.2f}x that of "
                        f"predicting the window mean (> {thresholds.reconstruction_ratio}): the encoder learned "
                        f"nothing about these windows (pretrained on the wrong data?); probe {score:.3f}, "
                        f"random-encoder control {control:.3f}")
    return failures


def finetune_failures(metrics: dict, smoke_f1: float, n_classes: int, policy: str = "point",
                      ci_smoke=None, ci_majority=None) -> list[str]:
    """`ci_smoke`, `ci_majority`: bootstrap CIs of fine-tuned − smoke and fine-tuned − majority macro F1."""
    failures = []
    f1, majority = metrics["val_f1"], metrics["majority_f1"]
    if policy == "ci":
        if _not_above(ci_smoke):
            failures.append(f"val_f1 − smoke {f1 - smoke_f1:+.3f}, {_ci_text(ci_smoke)} does not exclude 0 "
                            "(--gate-policy ci): no gain over gate 1 beyond noise")
        if _not_above(ci_majority):
            failures.append(f"val_f1 − majority {f1 - majority:+.3f}, {_ci_text(ci_majority)} does not exclude 0 "
                            "(--gate-policy ci)")
    else:
        if f1 <= smoke_f1:
            failures.append(f"val_f1 {f1:.3f} <= smoke {smoke_f1:.3f} (majority {majority:.3f}): no gain over gate 1")
        if f1 <= majority:
            failures.append(f"val_f1 {f1:.3f} <= majority-class baseline {majority:.3f}")
    predicted = int(np.count_nonzero(metrics["val_pred_counts"]))
    if predicted < n_classes:
        failures.append(f"predicts {predicted} of {n_classes} classes on val (counts {metrics['val_pred_counts']})")
    return failures


def augment_failures(numbers: dict, config: AugmentConfig, policy: str = "point", ci=None) -> list[str]:
    """`numbers`: n_synthetic, n_train, cap, min_quality, ks_min_p, duplicates, foreign_sources, val_f1, finetune_f1.
    `ci`: bootstrap CI of augmented − gate-4 macro F1."""
    failures = []
    if numbers["n_synthetic"] > numbers["cap"]:
        failures.append(f"{numbers['n_synthetic']} synthetic rows > cap {numbers['cap']} "
                        f"(ratio {config.ratio}:1 of {numbers['n_train']} train rows, max {config.max_synthetic})")
    if numbers["n_synthetic"] and numbers["min_quality"] < config.quality_threshold:
        failures.append(f"lowest quality {numbers['min_quality']:.3f} < {config.quality_threshold}")
    if numbers["n_synthetic"] and numbers["ks_min_p"] < config.ks_alpha:
        failures.append(f"KS p-value {numbers['ks_min_p']:.3g} < {config.ks_alpha} "
                        f"({numbers['ks_worst']}): synthetic rows are off the train distribution")
    if numbers["duplicates"]:
        failures.append(f"{numbers['duplicates']} synthetic rows duplicate a real or synthetic row")
    if numbers["foreign_sources"]:
        failures.append(f"synthetic rows derive from non-train rows {numbers['foreign_sources'][:5]}")
    if policy == "ci":
        if ci[0] < -config.tolerance:
            failures.append(f"val_f1 − gate-4 {numbers['val_f1'] - numbers['finetune_f1']:+.3f}, {_ci_text(ci)}: "
                            f"lower bound below −{config.tolerance} (--gate-policy ci)")
    elif numbers["val_f1"] < numbers["finetune_f1"] - config.tolerance:
        failures.append(f"val_f1 {numbers['val_f1']:.3f} < gate-4 {numbers['finetune_f1']:.3f} - "
                        f"{config.tolerance}: augmentation degrades real val rows")
    return failures


def baseline_warning(baseline_f1: float, finetune_f1: float, policy: str = "point", ci=None) -> str | None:
    """`ci`: bootstrap CI of fine-tuned − SimpleLSTM macro F1."""
    if policy == "ci":
        if _not_above(ci):
            return (f"fine-tuned − SimpleLSTM {finetune_f1 - baseline_f1:+.3f}, {_ci_text(ci)} does not exclude 0 "
                    "(--gate-policy ci): the benefit of pretraining is within noise")
        return None
    if baseline_f1 >= finetune_f1:
        return (f"SimpleLSTM val_f1 {baseline_f1:.3f} >= fine-tuned EnhancedSimpleLSTM {finetune_f1:.3f}: "
                "re-inspect the benefit of pretraining")
    return None


def ensemble_warning(ensemble_f1: float, best_name: str, best_f1: float, tolerance: float, policy: str = "point",
                     ci=None) -> str | None:
    """`ci`: bootstrap CI of ensemble − best member macro F1."""
    if policy == "ci":
        if ci[0] < -tolerance:
            return (f"ensemble − best member {best_name} {ensemble_f1 - best_f1:+.3f}, {_ci_text(ci)}: lower bound "
                    f"below −{tolerance} (--gate-policy ci)")
        return None
    if ensemble_f1 < best_f1 - tolerance:
        return (f"ensemble val_f1 {ensemble_f1:.3f} < best member {best_name} {best_f1:.3f} - {tolerance}: "
                "averaging loses to a single model")
    return None
