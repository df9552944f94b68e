"""What `predict` delivers is what was scored: a model file is used on a run's numbers only when its
recipe (`moola.recipe`) and verdict are that run's, and a saved refit that strays from its fold
models is not delivered."""

from __future__ import annotations

import shutil
import types

import numpy as np
import pytest
import torch

from moola import artifacts, models
from moola.__main__ import main
from moola.config import apply_overrides, quick_profile
from moola.data.demo import generate
from moola.data.parquet import write_windows
from moola.deploy.model import approval
from moola.deploy.select import choose
from moola.models.enhanced_lstm import EnhancedSimpleLSTM
from moola.recipe import PACKAGE, code_version, differences, make_recipe
from moola.results import append_line
from moola.stages.rules import REFIT_AGREEMENT_FLOOR, refit_failures

from .test_select import run

CLASSES = ["consolidation", "retracement"]
INPUT = {"window_shape": [105, 4], "channels": "ohlc", "shared_channels": True, "normalisation": "per-window z-score"}


def recipe_of(*overrides: str, data: str = "fp-demo") -> dict:
    return make_recipe(apply_overrides(quick_profile(), overrides), 17, data, "cpu", False)


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    pool = generate(seed=17, n_unlabeled=1200)["unlabeled"]
    path = tmp_path_factory.mktemp("windows") / "windows.parquet"
    write_windows(path, {key: np.asarray(value)[:16] for key, value in pool.items()})
    return path


def save_finetuned(folder, run_id: str, recipe: dict, status: str = "passed", **more) -> None:
    torch.manual_seed(0)
    model = EnhancedSimpleLSTM(4, 2, 8, 1).eval()
    metadata = {"architecture": models.architecture(model), "input": INPUT, "classes": CLASSES,
                "data_fingerprint": recipe["data"], "recipe": recipe,
                "gate": {"gate": "4_finetune_enhanced", "status": status, "run_id": run_id,
                         "deliverable": status in ("passed", "warning")}, **more}
    artifacts.save_checkpoint(folder / "artifacts" / artifacts.FINETUNED, model.state_dict(), metadata)


def record(folder, run_id: str, recipe: dict, narrowed: bool = False) -> None:
    """A run whose fine-tuned model is the one `select` recommends."""
    for line in run(("finetuned", 0.9, 100.0), run_id=run_id):
        line["recipe"] = recipe
        line["scope"] = {"narrowed": narrowed, "gates": [4] if narrowed else list(range(8)),
                         "selection": "--start-gate 4" if narrowed else "every gate"}
        append_line(folder / "results.jsonl", line)


def predict(folder, windows, *extra) -> int:
    return main(["predict", str(windows), "--out", str(folder / "p.csv"), "--artifacts-dir",
                 str(folder / "artifacts"), "--results", str(folder / "results.jsonl"), *extra])


def test_a_file_resaved_by_a_run_of_another_recipe_is_refused_with_the_commands_that_match_them(tmp_path, windows,
                                                                                               capsys):
    # the README's resume example after a full run: the narrowed rerun re-saves the recommended file
    record(tmp_path, "runA", recipe_of())
    record(tmp_path, "runB", recipe_of("finetune.epochs=5"), narrowed=True)
    save_finetuned(tmp_path, "runB", recipe_of("finetune.epochs=5"))
    assert predict(tmp_path, windows) == 2
    err = capsys.readouterr().err
    assert "run runA (the latest run of the whole suite" in err and "is not the model whose numbers" in err
    assert "--set finetune.epochs=5 vs (default)" in err
    assert "--run-id runB" in err and "pytest gates -x --profile quick" in err
    assert not (tmp_path / "p.csv").exists()
    assert predict(tmp_path, windows, "--run-id", "runB") == 0  # that run's own numbers: its file
    assert "recommended by moola select for run runB" in capsys.readouterr().out


def test_a_file_resaved_with_the_same_recipe_and_verdict_is_delivered_and_said_so(tmp_path, windows, capsys):
    record(tmp_path, "runA", recipe_of())
    record(tmp_path, "runB", recipe_of(), narrowed=True)
    save_finetuned(tmp_path, "runB", recipe_of())
    assert predict(tmp_path, windows) == 0
    assert "saved again by run runB, with the same recipe and verdict" in capsys.readouterr().out


@pytest.mark.parametrize(("status", "said"), [("failed", "said failed of it"), ("pending", "said pending of it")])
def test_the_recommended_path_refuses_a_file_its_gate_did_not_approve(tmp_path, windows, capsys, status, said):
    record(tmp_path, "runA", recipe_of())
    save_finetuned(tmp_path, "runA", recipe_of(), status=status)
    assert predict(tmp_path, windows) == 2
    assert said in capsys.readouterr().err


def test_the_recommended_path_refuses_another_code_version(tmp_path, windows, capsys):
    record(tmp_path, "runA", recipe_of())
    record(tmp_path, "runB", {**recipe_of(), "code": "0123456789ab", "hash": "edited"}, narrowed=True)
    save_finetuned(tmp_path, "runB", {**recipe_of(), "code": "0123456789ab", "hash": "edited"})
    assert predict(tmp_path, windows) == 2
    assert f"code version (a digest of the moola package's and the gates' source) 0123456789ab vs {code_version()}" in \
        capsys.readouterr().err


def test_model_x_refuses_an_approved_file_trained_on_other_data(tmp_path, windows, capsys):
    record(tmp_path, "runA", recipe_of(data="fp-now"))
    record(tmp_path, "runOld", recipe_of(data="fp-before"))
    save_finetuned(tmp_path, "runOld", recipe_of(data="fp-before"))
    lines = (tmp_path / "results.jsonl").read_text().splitlines()  # the latest full run is runA
    assert len(lines) == 4
    (tmp_path / "results.jsonl").write_text("\n".join(lines[2:] + lines[:2]) + "\n")  # runOld first, runA latest
    assert predict(tmp_path, windows, "--model", "finetuned") == 2
    err = capsys.readouterr().err
    assert "data fingerprint fp-before vs fp-now" in err and "--run-id runOld" in err
    assert predict(tmp_path, windows, "--model", "finetuned", "--run-id", "runOld") == 0
    assert "the recipe and verdict scored in run runOld" in capsys.readouterr().out


def test_model_x_refuses_other_data_when_the_latest_run_did_not_score_its_gate(tmp_path, windows, capsys):
    save_finetuned(tmp_path, "runOld", recipe_of(data="fp-before"))
    lines = run(("finetuned", 0.9, 100.0, "not_run"), run_id="runA")
    for line in lines:
        line["scope"] = {"narrowed": False, "gates": list(range(8)), "selection": "every gate"}
        line["data"] = {**(line.get("data") or {}), "fingerprint": "fp-now"}
        append_line(tmp_path / "results.jsonl", line)
    assert predict(tmp_path, windows, "--model", "finetuned") == 2
    assert "was trained on other data (fingerprint fp-before) than run runA" in capsys.readouterr().err


def test_the_code_version_ignores_the_docs_and_follows_the_package_and_gate_source(tmp_path):
    # the seed's workflow copies the code to the pod with scp: no .git
    copy = tmp_path / "repo"
    shutil.copytree(PACKAGE, copy / "moola", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(PACKAGE.parent / "gates", copy / "gates", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(PACKAGE.parent / "conftest.py", copy / "conftest.py")
    (copy / "docs").mkdir()
    (copy / "docs" / "gates.md").write_text("the gates\n")
    (copy / "README.md").write_text("moola\n")
    assert not (copy / ".git").exists()
    before = code_version(copy / "moola")
    assert before == code_version(PACKAGE)
    (copy / "docs" / "gates.md").write_text("the gates, edited\n")
    (copy / "README.md").write_text("moola, edited\n")
    assert code_version.__wrapped__(copy / "moola") == before
    (copy / "moola" / "training" / ".#classifier.py").symlink_to("nowhere")  # an editor's lock link
    assert code_version.__wrapped__(copy / "moola") == before
    with open(copy / "moola" / "training" / "classifier.py", "a") as handle:
        handle.write("# an edit\n")
    edited = code_version.__wrapped__(copy / "moola")
    assert edited != before
    with open(copy / "gates" / "test_4_finetune_enhanced.py", "a") as handle:
        handle.write("# an edit\n")
    assert code_version.__wrapped__(copy / "moola") not in (before, edited)


def test_recipe_differences_name_each_setting_and_are_empty_for_the_same_recipe():
    assert differences(recipe_of(), recipe_of()) == []
    said = differences(recipe_of("finetune.epochs=5", "evaluation.cv=holdout"), recipe_of("finetune.epochs=7"))
    assert said == ["--set evaluation.cv=holdout vs (default)", "--set finetune.epochs=5 vs 7"]
    assert differences(recipe_of(data="a"), recipe_of(data="b")) == ["data fingerprint a vs b"]
    assert differences(None, recipe_of()) == ["one of them was written before moola recorded recipes"]
    # --nproc N pretrains the encoder one process would, and the cache serves any N: the same recipe
    assert recipe_of("pretrain.devices=4") == recipe_of()


def strayed(agreement: float) -> dict:
    return {"pooled_rows": {"agreement": 0.9, "agreement_where_right": 1.0, "rows_right": 90},
            "unlabeled": {"rows": 256, "agreement": agreement}}


@pytest.mark.parametrize(("agreement", "delivered"), [(REFIT_AGREEMENT_FLOOR - 0.01, False),
                                                      (REFIT_AGREEMENT_FLOOR, True), (0.97, True)])
def test_a_refit_that_strays_from_its_fold_models_is_not_delivered(agreement, delivered):
    assert (not refit_failures(strayed(agreement))) is delivered
    gate = {"gate": "4_finetune_enhanced", "status": "passed", "run_id": "r", "deliverable": True}
    approved, said = approval({"gate": gate, "refit_check": strayed(agreement)}, "finetuned")
    assert approved is delivered and (delivered or "below the floor 80%" in said)
    ensemble = {"gate": {**gate, "gate": "7_ensemble"}, "refit_checks": {"finetuned": strayed(agreement)}}
    assert approval(ensemble, "ensemble")[0] is delivered
    control = {"gate": {**gate, "gate": "2_control_minirocket"}, "selected": {"run_id": "r"},
               "refit_check": strayed(agreement)}
    assert approval(control, "minirocket")[0] is delivered
    lines = run(("minirocket", 0.9, 2.0), ("finetuned", 0.9, 100.0))
    lines[1]["metrics"]["refit"] = {"check": strayed(agreement)}
    [entry] = [r for r in choose(lines).ranked if r.name == "minirocket"]
    assert entry.candidate is delivered and (delivered or "below the floor" in entry.why_not)


def test_where_the_pool_cannot_be_read_the_refit_is_judged_on_the_rows_its_fold_models_got_right():
    check = {"pooled_rows": {"agreement": 0.7, "agreement_where_right": 0.75, "rows_right": 80},
             "unlabeled": {"skipped": "the classifiers read a labeled span and pool windows have none"}}
    [failure] = refit_failures(check)
    assert "75% of 80 labeled rows its fold models classified right" in failure
    assert refit_failures(None) == [] and refit_failures({"pooled_rows": {"agreement": 0.5}}) == []


def test_the_ending_repeats_every_option_that_defines_the_run(request):
    plugin_class = type(request.config.pluginmanager.get_plugin("moola-results"))
    option = types.SimpleNamespace(demo="seed", data_dir=None, artifacts_dir=None, results=None, profile="quick",
                                   device="auto", seed=18, cv=None, folds=None, seeds=None, gate_policy="point",
                                   nproc=2, shuffle_labels=False, moola_set=["finetune.epochs=5"])
    plugin = plugin_class.__new__(plugin_class)
    plugin.config, plugin.scope = types.SimpleNamespace(option=option), None
    plugin.settings = types.SimpleNamespace(demo="seed", data_root="data")
    plugin.resolved_root = lambda: "data"
    options = plugin.command_options()["run_options"]
    assert options == "--demo --profile quick --seed 18 --gate-policy point --nproc 2 --set finetune.epochs=5"


def test_model_x_refuses_to_go_unchecked_when_the_results_file_is_damaged(tmp_path, windows, capsys):
    record(tmp_path, "runA", recipe_of(data="fp-now"))
    save_finetuned(tmp_path, "runOld", recipe_of(data="fp-before"))
    with open(tmp_path / "results.jsonl", "a") as handle:
        handle.write('{"gate": "4_fine')  # a run killed mid-write
    assert predict(tmp_path, windows, "--model", "finetuned") == 2
    err = capsys.readouterr().err
    assert "is not a JSON results line" in err and "not compared" not in err


def test_a_pending_file_of_the_printed_run_is_not_sent_to_its_own_run_id(tmp_path, windows, capsys):
    record(tmp_path, "runA", recipe_of())
    save_finetuned(tmp_path, "runA", recipe_of(), status="pending")
    assert predict(tmp_path, windows) == 2
    err = capsys.readouterr().err
    assert "said pending of it" in err and "--run-id runA" not in err and "pytest gates -x --profile quick" in err


def test_select_and_predict_apply_the_refit_floor_to_the_ensembles_members_and_the_baseline():
    lines = run(("finetuned", 0.9, 100.0), ("ensemble", 0.9, 120.0))
    lines[1]["metrics"]["refit"] = {"check": strayed(0.5)}
    lines[2]["members_used"] = ["finetuned"]  # gate 7's line names its members
    [ensemble] = [r for r in choose(lines).ranked if r.name == "ensemble"]
    assert not ensemble.candidate and "member finetuned: the saved refit agrees" in ensemble.why_not
    gate = {"gate": "6_baseline_simplelstm", "status": "passed", "run_id": "r"}
    assert approval({"gate": gate, "refit_check": strayed(0.97)}, "baseline")[0]
    assert not approval({"gate": gate, "refit_check": strayed(0.5)}, "baseline")[0]
