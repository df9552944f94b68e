import pytest

from moola.config import apply_overrides, full_profile, quick_profile, resolve_profile, valid_keys


def test_auto_profile_is_full_on_cuda_and_quick_elsewhere():
    assert resolve_profile("auto", "cuda").name == "full"
    assert resolve_profile("auto", "cpu").name == "quick"
    assert resolve_profile("auto", "mps").name == "quick"


def test_quick_runs_the_same_algorithms_with_less_work():
    full, quick = full_profile(), quick_profile()
    assert quick.pretrain.mask_strategy == full.pretrain.mask_strategy
    assert quick.pretrain.epochs < full.pretrain.epochs and quick.finetune.epochs < full.finetune.epochs
    assert full.pretrain.epochs == 50 and full.pretrain.batch_size == 512 and full.finetune.epochs == 60


def test_override_changes_one_typed_field():
    profile = apply_overrides(full_profile(), ["pretrain.batch_size=256", "pretrain.mask_ratio=0.2",
                                               "data.classes=a,b"])
    assert profile.pretrain.batch_size == 256 and profile.pretrain.mask_ratio == 0.2
    assert profile.data.classes == ("a", "b")


def test_unknown_key_lists_the_valid_keys():
    with pytest.raises(ValueError, match="unknown key 'pretrain.batchsize'.*pretrain.batch_size"):
        apply_overrides(full_profile(), ["pretrain.batchsize=256"])


def test_wrong_type_is_rejected():
    with pytest.raises(ValueError, match="expected int, found 'big'"):
        apply_overrides(full_profile(), ["pretrain.batch_size=big"])


def test_every_key_is_section_dot_field():
    assert all(key.count(".") == 1 for key in valid_keys(full_profile()))


@pytest.mark.parametrize("item, allowed", [
    ("data.channels=OHLC", "ohlc, generic"),  # capitals used to switch the OHLC checks off silently
    ("pretrain.mask_strategy=patches", "random, block, patch"),
    ("finetune.loss=ce", "weighted_ce, focal"),
    ("finetune.select=best", "raw, ema, swa"),
    ("thresholds.gate_policy=strict", "point, ci"),
    ("evaluation.cv=kfold", "holdout, blocked, walk-forward"),
])
def test_enumerated_settings_are_checked_at_start_with_the_allowed_values(item, allowed):
    with pytest.raises(ValueError, match=f"expected one of {allowed}, found"):
        apply_overrides(quick_profile(), [item])


def test_a_wrong_case_gets_a_did_you_mean():
    with pytest.raises(ValueError, match="did you mean 'ohlc'"):
        apply_overrides(quick_profile(), ["data.channels=OHLC"])


def test_the_choices_are_the_ones_the_library_implements():
    from moola.config import CHOICES
    from moola.evaluation.folds import PROTOCOLS
    from moola.training.classifier import LOSSES
    from moola.training.masking import STRATEGIES

    assert CHOICES["pretrain.mask_strategy"] == STRATEGIES and CHOICES["finetune.loss"] == LOSSES
    assert CHOICES["evaluation.cv"] == PROTOCOLS
    assert all(getattr(getattr(full_profile(), k.split(".")[0]), k.split(".")[1]) in v for k, v in CHOICES.items())


@pytest.mark.parametrize("items, message", [
    (["finetune.swa_fraction=0"], "finetune.swa_fraction=0.0 with finetune.select=swa"),
    (["finetune.select=ema", "finetune.ema_half_life=0"], "finetune.ema_half_life=0 with finetune.select=ema"),
])
def test_a_selected_average_that_would_never_be_kept_is_refused_at_start(items, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(quick_profile(), items)
    assert apply_overrides(quick_profile(), [*items, "finetune.select=raw"]).finetune.select == "raw"


@pytest.mark.parametrize("item", ["finetune.swa_fraction=1", "finetune.swa_fraction=-0.1", "finetune.ema_half_life=-3"])
def test_out_of_range_averaging_settings_are_refused_at_start(item):
    with pytest.raises(ValueError, match="expected"):
        apply_overrides(quick_profile(), [item, "finetune.select=raw"])


def test_a_swa_share_near_one_leaves_an_epoch_before_averaging():
    from moola.stages.classifiers import finetune_options

    profile = apply_overrides(quick_profile(), ["finetune.swa_fraction=0.99"])
    assert finetune_options(profile.finetune, {}, 25).swa_epochs == 24


@pytest.mark.parametrize("item", ["ensemble.members=finetuned,simplelstm", "ensemble.members=",
                                  "ensemble.members=finetuned,finetuned"])
def test_ensemble_members_are_distinct_known_names(item):
    with pytest.raises(ValueError, match="expected a comma-separated list of distinct names from finetuned, "
                                         "augmented, baseline, minirocket"):
        apply_overrides(quick_profile(), [item])


def test_ensemble_members_default_to_the_gate4_and_gate5_models_and_parse_a_list():
    assert quick_profile().ensemble.members == ("finetuned", "augmented")
    profile = apply_overrides(quick_profile(), ["ensemble.members=finetuned, baseline"])
    assert profile.ensemble.members == ("finetuned", "baseline")


def test_ensemble_members_need_a_candidate_not_only_comparison_models():
    with pytest.raises(ValueError, match="expected finetuned or augmented among them"):
        apply_overrides(quick_profile(), ["ensemble.members=baseline,minirocket"])


def test_the_replaced_include_minirocket_key_names_its_successor():
    with pytest.raises(ValueError, match="use --set ensemble.members=finetuned,augmented,minirocket"):
        apply_overrides(quick_profile(), ["ensemble.include_minirocket=true"])
