"""`moola select` on constructed runs, the run's ending text, and which run counts as "the latest"."""

from __future__ import annotations

import numpy as np
import pytest

from moola.__main__ import main
from moola.deploy.select import choose, format_selection
from moola.report.ending import ending
from moola.results import GATES, append_line, build_line, choose_run

N = 98
Y = np.repeat([0, 1, 0, 1, 0, 1, 0], 14)  # classes in regimes of 14 rows, as windows cut from one history
FOLD_OF = np.repeat(np.arange(5), [20, 20, 20, 19, 19])
GATE_OF = {"smoke": GATES[1], "minirocket": GATES[2], "finetuned": GATES[4], "augmented": GATES[5],
           "baseline": GATES[6], "ensemble": GATES[7]}


def predictions(accuracy: float, seed: int) -> list:
    """Predicted classes, wrong on a seeded share `1 - accuracy` of the rows (spread over every fold)."""
    rng = np.random.default_rng(seed)
    wrong = rng.choice(N, size=round(N * (1 - accuracy)), replace=False)
    pred = Y.copy()
    pred[wrong] = 1 - pred[wrong]
    return pred.tolist()


def model_line(name: str, pred: list, cost: float, status: str = "passed", run_id: str = "run1",
               policy: str = "ci", shuffled: bool = False, saved: bool = True, rows=None) -> dict:
    rows = list(range(N)) if rows is None else rows
    data = {"classes": ["consolidation", "retracement"],
            "train_labels": "shuffled (a negative control)" if shuffled else "as given"}
    return build_line(GATE_OF[name], status, run_id=run_id, reason=None if status == "passed" else "its rule",
                      metrics={"val_f1": 0.0, "majority_f1": 0.34, "cost": {"total_s": cost, "parts": {name: cost}}},
                      artifacts={"model": f"artifacts/models/{name}.pt"} if saved else {},
                      extra={"oof": {"rows": rows, "y": Y[rows].tolist(), "fold_of": FOLD_OF[rows].tolist(),
                                     "seeds": [17], "pred": [pred]},
                             # gate 5's line records gate 4's rule on the same session's numbers
                             **({"requires": {GATES[4]: {"holds": True, "failures": []}}} if name == "augmented"
                                else {})},
                      context={"seed": 17, "data": data, "evaluation": {"cv": "blocked", "gate_policy": policy},
                               "profile": "quick", "scope": {"narrowed": False, "gates": list(GATES),
                                                             "selection": "every gate"}})


def run(*models, **common) -> list:
    """A run's lines: gate 0, then one line per model (name, accuracy, cost[, status])."""
    lines = [build_line(GATES[0], "passed", run_id=common.get("run_id", "run1"),
                        context={"seed": 17, "evaluation": {"cv": "blocked", "gate_policy": common.get("policy", "ci")}})]
    for seed, (name, accuracy, cost, *status) in enumerate(models):
        pred = predictions(accuracy, seed) if isinstance(accuracy, float) else accuracy
        lines.append(model_line(name, pred, cost, *(status or ["passed"]), **common))
    return lines


def ranked(selection) -> dict:
    return {r.name: r for r in selection.ranked}


def test_the_control_is_recommended_when_it_beats_the_deep_model():
    selection = choose(run(("smoke", 0.85, 130.0), ("minirocket", 0.95, 3.0, "failed"), ("finetuned", 0.72, 200.0)))
    assert selection.recommended.name == "minirocket" and selection.best.name == "minirocket"
    by_name = ranked(selection)
    assert by_name["finetuned"].candidate and by_name["finetuned"].vs_best["delta_ci95"][1] < 0  # shown worse
    assert not by_name["smoke"].candidate and "not saved" in by_name["smoke"].why_not
    assert "RECOMMENDED" in format_selection(selection)


def test_the_deep_model_is_recommended_when_the_control_is_shown_worse_whatever_it_costs():
    selection = choose(run(("minirocket", 0.70, 3.0, "passed"), ("finetuned", 0.97, 500.0)))
    assert selection.recommended.name == "finetuned"
    assert ranked(selection)["minirocket"].vs_best["delta_ci95"][1] < 0


def test_a_tie_within_noise_goes_to_the_cheaper_model_either_way():
    tie = (("minirocket", 0.90, 3.0, "failed"), ("finetuned", 0.92, 200.0))
    selection = choose(run(*tie))
    assert selection.best.name == "finetuned" and selection.recommended.name == "minirocket"
    low, high = ranked(selection)["minirocket"].vs_best["delta_ci95"]
    assert low < 0 <= high  # not shown worse
    cheap_deep = choose(run(("minirocket", 0.90, 300.0, "failed"), ("finetuned", 0.92, 20.0)))
    assert cheap_deep.recommended.name == "finetuned"  # cost decides, not which family


def test_under_the_point_policy_only_an_exact_tie_goes_to_the_cheaper():
    same = predictions(0.9, 3)
    selection = choose(run(("minirocket", same, 3.0, "failed"), ("finetuned", same, 200.0), policy="point"))
    assert selection.recommended.name == "minirocket"
    better = choose(run(("minirocket", 0.90, 3.0, "failed"), ("finetuned", 0.92, 200.0), policy="point"))
    assert better.recommended.name == "finetuned"


def test_a_model_without_signal_is_never_recommended_and_none_is_said_so():
    constant = [0] * N
    selection = choose(run(("minirocket", constant, 3.0, "failed"), ("finetuned", 0.5, 100.0, "failed")))
    assert selection.recommended is None
    assert "classes" in ranked(selection)["minirocket"].why_not  # predicts one class
    assert "gate 4_finetune_enhanced failed" in ranked(selection)["finetuned"].why_not
    assert "recommended: none" in format_selection(selection)


def test_unapproved_deep_models_comparison_models_and_negative_controls_are_never_recommended():
    selection = choose(run(("minirocket", 0.80, 3.0, "passed"), ("finetuned", 0.95, 100.0, "failed"),
                           ("augmented", 0.97, 150.0, "passed"), ("baseline", 0.99, 10.0, "warning")))
    by_name = ranked(selection)
    assert "gate 4_finetune_enhanced failed" in by_name["augmented"].why_not  # built on an unapproved model
    assert "comparison model" in by_name["baseline"].why_not
    assert selection.recommended.name == "minirocket"
    shuffled = choose(run(("minirocket", 0.95, 3.0, "failed"), shuffled=True))
    assert shuffled.recommended is None and "negative-control" in ranked(shuffled)["minirocket"].why_not
    unsaved = choose(run(("minirocket", 0.95, 3.0, "failed"), saved=False))
    assert unsaved.recommended is None and "saved no model" in ranked(unsaved)["minirocket"].why_not


def test_a_model_scored_on_other_rows_is_not_paired_with_the_rest():
    lines = run(("minirocket", 0.9, 3.0, "failed"), ("finetuned", 0.92, 100.0))
    lines.append(model_line("ensemble", predictions(0.99, 5)[78:], 120.0, "passed", rows=list(range(78, 98))))
    selection = choose(lines)
    assert "other rows" in ranked(selection)["ensemble"].why_not
    assert selection.recommended.name == "minirocket"


def test_the_ending_names_the_model_its_file_and_the_next_commands_with_the_run_options():
    lines = run(("smoke", 0.85, 130.0), ("minirocket", 0.95, 3.0, "failed"))
    lines[2]["reason"] = "smoke − MiniRocket val_f1 −0.039, 95% CI [−0.112, +0.033] does not exclude 0"
    for gate in (3, 4, 5, 6, 7):
        lines.append(build_line(GATES[gate], "not_run", run_id="run1", reason="session stopped after gate 2 (-x)"))
    text = ending(lines, choose(lines), {"run_options": "--demo --seed 18", "artifacts_dir": None, "results": None,
                                         "data_root": "data", "narrowed": False})
    assert "gate 2_control_minirocket failed: the pretrained LSTM is not shown to beat" in text
    assert "recommended model: minirocket" in text and "file: artifacts/models/minirocket.pt" in text
    assert "python -m moola predict data/raw/unlabeled_windows.parquet --out predictions.parquet" in text
    assert "pytest gates --demo --seed 18 --start-gate 3 --gate-policy point" in text
    assert "python -m moola sweep --grid pretrain.mask_strategy=random,block,patch -- -x --demo --seed 18" in text
    assert "not a gain beyond noise" in text  # what the point run can and cannot decide
    assert "pytest gates -x --demo --seed 18 --profile full" in text
    assert "gates 3, 4, 5, 6, 7 did not run" in text


def write_run(path, run_id: str, gates, narrowed=None) -> None:
    scope = None if narrowed is None else {"narrowed": narrowed, "gates": list(gates), "selection": "-k finetune"}
    for gate in gates:
        append_line(path, build_line(GATES[gate], "passed", run_id=run_id, context={"scope": scope}))


def test_the_latest_run_is_the_latest_run_of_the_whole_suite(tmp_path, capsys):
    results = tmp_path / "results.jsonl"
    write_run(results, "full", range(8), narrowed=False)
    write_run(results, "narrow", [4], narrowed=True)
    lines, said = choose_run(results)
    assert lines[0]["run_id"] == "full" and "1 later narrowed or negative-control run(s) skipped: narrow (-k finetune)" in said
    assert choose_run(results, include_narrowed=True)[0][0]["run_id"] == "narrow"
    assert choose_run(results, "narrow")[0][0]["run_id"] == "narrow"
    assert main(["report", str(results)]) == 0
    assert "run full (the latest run of the whole suite" in capsys.readouterr().out
    assert main(["report", str(results), "--include-narrowed"]) == 0
    assert "run narrow (the latest run, narrowed (-k finetune))" in capsys.readouterr().out


def test_lines_without_a_scope_count_as_narrowed_when_a_gate_line_is_missing(tmp_path):
    results = tmp_path / "results.jsonl"
    write_run(results, "old_full", range(8))
    write_run(results, "old_narrow", [4, 5])
    assert choose_run(results)[0][0]["run_id"] == "old_full"
    only = tmp_path / "only.jsonl"
    write_run(only, "old_narrow", [4, 5])
    lines, said = choose_run(only)
    assert lines[0]["run_id"] == "old_narrow" and "no run of the whole suite is recorded" in said


@pytest.mark.parametrize("model", ["recommended", "minirocket"])
def test_predict_refuses_a_control_select_did_not_recommend(tmp_path, capsys, model):
    results = tmp_path / "results.jsonl"
    for line in run(("minirocket", [0] * N, 3.0, "failed")):
        append_line(results, line)
    windows = tmp_path / "w.parquet"
    windows.write_bytes(b"")
    assert main(["predict", str(windows), "--out", str(tmp_path / "p.parquet"), "--model", model,
                 "--results", str(results), "--artifacts-dir", str(tmp_path / "artifacts")]) == 2
    err = capsys.readouterr().err
    assert ("recommends no model" in err and "python -m moola select" in err) if model == "recommended" \
        else "no minirocket model at" in err


def test_the_ending_tells_skipped_gates_from_gates_that_did_not_run():
    lines = run(("augmented", 0.9, 300.0), ("baseline", 0.6, 5.0))
    del lines[1]["requires"]  # a gate-5 line that does not say gate 4's rule held (a moola before it recorded that)
    lines.append(build_line(GATES[7], "skipped", run_id="run1", reason="nothing to average"))
    text = ending(lines, choose(lines), {"run_options": "", "results": None, "artifacts_dir": None,
                                         "data_root": "data", "narrowed": True})
    assert "every gate this run judged passed; gate 7 skipped" in text
    assert "recommended model: none" in text and "gate 4_finetune_enhanced's rule is not recorded" in text


def test_a_model_scored_on_other_seeds_is_not_paired_and_nothing_crashes():
    lines = run(("minirocket", 0.9, 3.0, "failed"), ("finetuned", 0.92, 100.0))
    for line in lines[1:]:  # two seeds each
        line["oof"]["seeds"], line["oof"]["pred"] = [17, 18], line["oof"]["pred"] * 2
    lines.append(model_line("ensemble", predictions(0.95, 5), 120.0))  # holdout's ensemble: the base seed only
    selection = choose(lines)
    assert "other rows or seeds" in ranked(selection)["ensemble"].why_not
    assert selection.recommended.name == "minirocket"


def test_a_better_model_that_cannot_be_delivered_is_named_beside_the_pick():
    selection = choose(run(("smoke", 0.99, 130.0), ("minirocket", 0.75, 3.0, "passed"),
                           ("finetuned", 0.99, 200.0, "failed")))
    assert selection.recommended.name == "minirocket"
    assert any(note.startswith("smoke scored better than minirocket") and "best deliverable" in note
               for note in selection.notes)
    assert "(the best deliverable)" in format_selection(selection)


def test_a_negative_control_run_is_never_the_latest_run(tmp_path):
    results = tmp_path / "results.jsonl"
    write_run(results, "real", range(8), narrowed=False)
    for gate in range(8):
        append_line(results, build_line(GATES[gate], "passed", run_id="shuffled", context={
            "scope": {"narrowed": False}, "data": {"train_labels": "shuffled (a negative control)"}}))
    lines, said = choose_run(results)
    assert lines[0]["run_id"] == "real" and "shuffled (negative control)" in said


def test_predict_given_a_csv_names_the_conversion_before_loading_any_model(tmp_path, capsys):
    windows = tmp_path / "w.csv"
    windows.write_text("window_id,features\na,\"[[1,2,1,2]]\"\n")
    assert main(["predict", str(windows), "--out", str(tmp_path / "p.parquet"),
                 "--artifacts-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "moola does not read CSV" in err and "d.to_parquet('" in err and str(tmp_path / "w.parquet") in err


def test_report_compare_pairs_two_runs_on_the_same_rows_and_labels_only():
    from moola.report.compare import compare_runs, paired_runs

    worse, better = model_line("minirocket", predictions(0.7, 1), 2.0), model_line("minirocket", predictions(0.95, 2),
                                                                                   2.0, run_id="run2")
    low, high = paired_runs(worse, better)
    assert 0 < low < high  # 0.95 vs 0.70 accuracy on the same 98 rows: better beyond noise
    assert paired_runs(better, better) == [0.0, 0.0]
    flipped = model_line("minirocket", predictions(0.95, 2), 2.0, run_id="run2")
    flipped["oof"]["y"] = (1 - Y).tolist()  # other labels on the same rows: nothing to pair
    assert paired_runs(worse, flipped) is None
    elsewhere = model_line("minirocket", predictions(0.95, 2)[:60], 2.0, run_id="run2", rows=list(range(60)))
    assert paired_runs(worse, elsewhere) is None
    gate = next(g for g in compare_runs([worse], [better])["gates"] if g["gate"] == GATES[2])
    assert gate["f1_delta_ci95"] == [low, high]


def test_a_below_chance_model_is_never_recommended_under_the_point_policy_either():
    """Issue 27's defect: under --gate-policy point, select took "F1 above the majority F1" as signal,
    and recommended a model with balanced accuracy 0.41 (gate 7's line had no majority F1: bar 0)."""
    below_chance = predictions(0.41, 4)
    for name in ("minirocket", "ensemble"):
        lines = run((name, below_chance, 3.0, "passed"), policy="point")
        if name == "ensemble":
            del lines[-1]["metrics"]["majority_f1"]
        selection = choose(lines)
        assert selection.recommended is None, name
        assert "no signal beyond guessing" in ranked(selection)[name].why_not
    # the same test still lets a model with signal through under point
    assert choose(run(("minirocket", 0.9, 3.0, "failed"), policy="point")).recommended.name == "minirocket"
