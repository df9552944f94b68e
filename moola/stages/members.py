"""Gate 7's members: the models `ensemble.members` names that passed their own gate this session.

Membership is fixed before the run (the config) and checked on each member's own gate rule, never
on the rows the ensemble is scored on. A narrowed run (`-k ensemble`, `--start-gate 5`) applies the
same rules to this session's numbers, so it never averages a model whose gate would have failed.
"""

from __future__ import annotations

from moola.stages.augmented import augment_verdict
from moola.stages.context import RunContext
from moola.stages.protocol import CrossFitted, compare, compare_to_chance, pooled_metrics
from moola.stages.rules import finetune_failures, refit_failures

GATE_OF_MEMBER = {"finetuned": "4_finetune_enhanced", "augmented": "5_augment_train",
                  "baseline": "6_baseline_simplelstm", "minirocket": "2_control_minirocket"}


def cost_parts(name: str, stages: dict, encoder_s: float | None) -> dict:
    """Seconds each part of a member's recipe took (`protocol.recipe_cost`'s parts): the LSTMs
    count the encoder's pretraining, the augmented model the fine-tuning it starts from."""
    finetuning = {"pretraining": encoder_s, "fine_tuning": stages["finetuned"].train_time_s}
    return {"finetuned": finetuning, "augmented": {**finetuning, "augmented": stages["augmented"].train_time_s},
            "baseline": {"simplelstm": stages["baseline"].train_time_s},
            "minirocket": {"minirocket": stages["minirocket"].train_time_s}}[name]


def finetune_verdict(ctx: RunContext, finetuned: CrossFitted, smoke: CrossFitted) -> tuple[list, dict, dict]:
    """Gate 4's failures, pooled metrics and comparison (fine-tuned vs smoke, and vs chance)."""
    metrics = pooled_metrics(ctx, finetuned)
    chance = compare_to_chance(ctx, finetuned)
    comparison = {**compare(ctx, finetuned, smoke, "1_smoke_enhanced"), "majority_f1": finetuned.majority.val_f1,
                  "chance": chance}
    failures = finetune_failures(metrics, smoke.val_f1, ctx.n_classes, ctx.profile.thresholds.gate_policy,
                                 comparison["delta_ci95"], chance)
    return failures, metrics, comparison


def choose_members(ctx: RunContext, stages: dict, smoke: CrossFitted) -> tuple[dict, dict]:
    """`stages`: member name ("finetuned", "augmented", "baseline", "minirocket") -> CrossFitted.

    Returns (members: name -> CrossFitted, in `ensemble.members` order; left_out: name -> why).
    finetuned joins when gate 4's rule holds; augmented when gate 5's does and the gate-4 recipe it
    is compared with passed too; baseline and minirocket (comparison models, not candidates) when
    configured, and only beside at least one approved candidate: never delivered on their own.
    """
    configured = ctx.profile.ensemble.members
    gate4 = finetune_verdict(ctx, stages["finetuned"], smoke)[0] if {"finetuned", "augmented"} & set(configured) else []
    members, left_out = {}, {}
    for name, stage in stages.items():
        if name not in configured:
            left_out[name] = f"not in ensemble.members ({','.join(configured)})"
            continue
        failures = []
        if name in ("finetuned", "augmented"):
            failures += [f"gate 4_finetune_enhanced: {failure}" for failure in gate4]
        if name == "augmented":
            failures += [f"gate 5_augment_train: {failure}"
                         for failure in augment_verdict(ctx, stages["augmented"], stages["finetuned"])[0]]
        failures += refit_failures(stage.final.extra.get("refit_check") if stage.final is not None else None)
        if failures:
            left_out[name] = "; ".join(failures)
        else:
            members[name] = stage
    if not {"finetuned", "augmented"} & set(members):  # comparison models are never delivered on their own
        for name in list(members):
            left_out[name] = ("a comparison model joins only beside an approved candidate (finetuned or augmented), "
                              "and none passed its gate")
        members = {}
    return {name: members[name] for name in configured if name in members}, left_out
