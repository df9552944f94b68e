"""The approved model as a file (`moola.deploy.model`) and `python -m moola predict` (`moola.deploy.predict`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from moola import artifacts
from moola.__main__ import main
from moola.data.demo import generate
from moola.data.parquet import write_windows
from moola.data.validate import labeled_hashes
from moola.deploy.model import Deployed, DeploymentError, Member, load_deployed, save_ensemble
from moola.models.enhanced_lstm import EnhancedSimpleLSTM
from moola.models.simple_lstm import SimpleLSTM
from moola.results import append_line, build_line
from moola.training.calibration import _apply, _fit_isotonic, apply_calibrator, fit_calibrator

CLASSES = ["consolidation", "retracement"]
# the ensemble by name, and no results file (the working directory's must not leak into these tests)
ENSEMBLE = ("--model", "ensemble", "--results", "/nonexistent/moola-results.jsonl")
INPUT = {"window_shape": [105, 4], "channels": "ohlc", "shared_channels": True, "normalisation": "per-window z-score"}


def trimmed(tables: dict) -> dict:
    """The demo's 98 labeled windows and 64 of its pool windows (as plain columns)."""
    pool = tables["unlabeled"]
    return {"labeled": tables["labeled"], "unlabeled": {k: np.asarray(v)[:64] for k, v in pool.items()}}


@pytest.fixture(scope="module")
def demo_tables():
    return trimmed(generate(seed=17, n_unlabeled=1200))


def make_ensemble(seed: int = 0) -> Deployed:
    """Two small networks with calibrators fitted on made-up out-of-fold probabilities."""
    rng = np.random.default_rng(seed)
    members = []
    for name, build in (("finetuned", lambda: EnhancedSimpleLSTM(4, 2, 8, 1)), ("baseline", lambda: SimpleLSTM(4, 2, 8))):
        torch.manual_seed(seed)
        proba = rng.dirichlet([1, 1], size=60)
        y = (rng.random(60) < proba[:, 1]).astype(int)
        members.append(Member(name, build().eval(), fit_calibrator(proba, y), {"gate": "4_finetune_enhanced"}))
    return Deployed("ensemble", members, CLASSES, INPUT)


def gate_metadata(status: str = "passed", deliverable: bool = True, labeled=None, **more) -> dict:
    return {"run_id": "run1", "versions": {"moola": "0.1.0"}, "train_labels_shuffled": False,
            "labeled_window_hashes": labeled_hashes(labeled) if labeled is not None else [],
            "gate": {"gate": "7_ensemble", "status": status, "run_id": "run1", "reason": None,
                     "deliverable": deliverable}, **more}


def saved_ensemble(tmp_path, demo_tables, **metadata) -> tuple[Deployed, object]:
    deployed = make_ensemble()
    labeled = demo_tables["labeled"]["features"]
    path = save_ensemble(tmp_path / "artifacts" / artifacts.ENSEMBLE, deployed, labeled,
                         gate_metadata(labeled=labeled, **metadata))
    return deployed, path


def windows_file(tmp_path, tables: dict, name: str = "windows.parquet", **changes):
    table = {**{k: tables[k] for k in ("window_id", "features", "label", "timestamp") if k in tables}, **changes}
    table = {k: v for k, v in table.items() if v is not None}
    write_windows(tmp_path / name, table)
    return tmp_path / name


@pytest.mark.parametrize("n_rows", [4, 40, 400])
def test_calibrator_arrays_reproduce_sklearn_isotonic_predictions(n_rows):
    rng = np.random.default_rng(n_rows)
    proba = np.round(rng.dirichlet([1, 1], size=n_rows), 2)  # ties, as real probabilities have
    y = (rng.random(n_rows) < proba[:, 1]).astype(int)
    y[:2] = [0, 1]
    scored = rng.uniform(-0.2, 1.2, size=(500, 2))  # inside and beyond the fitted range
    np.testing.assert_array_equal(apply_calibrator(fit_calibrator(proba, y), scored),
                                  _apply(_fit_isotonic(proba, y), scored))


def test_ensemble_file_loads_weights_only_and_predicts_what_the_session_did(tmp_path, demo_tables):
    deployed, path = saved_ensemble(tmp_path, demo_tables)
    payload = torch.load(path, map_location="cpu", weights_only=True)  # plain tensors and JSON text
    assert {"state_dict", "metadata"} <= set(payload)
    assert any(key.startswith("calibrator.finetuned.0.") for key in payload["state_dict"])
    loaded = load_deployed(path)
    new_windows = demo_tables["unlabeled"]["features"]
    np.testing.assert_allclose(loaded.predict_proba(new_windows), deployed.predict_proba(new_windows), atol=1e-12)
    assert [m.name for m in loaded.members] == ["finetuned", "baseline"] and loaded.classes == CLASSES


def test_a_minirocket_member_is_saved_as_plain_arrays_and_scores_as_the_fitted_classifier(tmp_path, demo_tables):
    from moola.data.normalize import normalize_windows
    from moola.models.minirocket import MiniRocketArrays, MiniRocketClassifier, score_proba

    labeled = demo_tables["labeled"]
    windows = normalize_windows(labeled["features"])
    y = (np.asarray(labeled["label"]) == "retracement").astype(int)
    classifier = MiniRocketClassifier(seed=17).fit(windows, y)
    deployed = make_ensemble()
    deployed.members[1] = Member("minirocket", MiniRocketArrays.from_classifier(classifier),
                                 fit_calibrator(score_proba(classifier.decision_function(windows)), y))
    path = save_ensemble(tmp_path / "e.pt", deployed, labeled["features"], gate_metadata())
    loaded = load_deployed(path)
    pool = demo_tables["unlabeled"]["features"]
    np.testing.assert_allclose(loaded.member_proba(pool)["minirocket"],
                               score_proba(classifier.decision_function(normalize_windows(pool))), atol=1e-12)
    np.testing.assert_allclose(loaded.predict_proba(pool), deployed.predict_proba(pool), atol=1e-12)


def test_predict_writes_every_window_with_calibrated_probabilities(tmp_path, demo_tables, capsys):
    deployed, _ = saved_ensemble(tmp_path, demo_tables)
    source = windows_file(tmp_path, demo_tables["unlabeled"])
    for out in ("p.parquet", "p.csv"):
        assert main(["predict", str(source), "--out", str(tmp_path / out),
                     "--artifacts-dir", str(tmp_path / "artifacts"), *ENSEMBLE]) == 0
    table = pd.read_parquet(tmp_path / "p.parquet")
    assert list(table.columns) == ["window_id", "p_consolidation", "p_retracement", "predicted", "members"]
    expected = deployed.predict_proba(demo_tables["unlabeled"]["features"])
    np.testing.assert_allclose(table[["p_consolidation", "p_retracement"]].to_numpy(), expected, atol=1e-12)
    assert (table["predicted"] == np.array(CLASSES)[expected.argmax(1)]).all()
    assert set(table["members"]) == {"finetuned+baseline"}
    csv = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_allclose(csv["p_retracement"].to_numpy(), expected[:, 1], rtol=1e-12)
    assert "64 windows scored" in capsys.readouterr().out


def test_predict_on_labeled_windows_prints_macro_f1_with_its_ci_and_says_when_it_is_in_sample(tmp_path, demo_tables,
                                                                                             capsys):
    saved_ensemble(tmp_path, demo_tables)
    source = windows_file(tmp_path, demo_tables["labeled"])
    assert main(["predict", str(source), "--out", str(tmp_path / "p.parquet"),
                 "--artifacts-dir", str(tmp_path / "artifacts"), *ENSEMBLE]) == 0
    out = capsys.readouterr().out
    assert "macro F1 " in out and "over 98 labeled windows (95% block bootstrap" in out
    assert "note: 98 of these 98 windows are rows of the labeled file the gates used" in out and "in-sample" in out
    assert "never seen" not in out
    assert "label" in pd.read_parquet(tmp_path / "p.parquet").columns


def test_predict_scores_the_windows_a_model_never_saw_apart_from_the_ones_it_did(tmp_path, demo_tables, capsys):
    deployed, _ = saved_ensemble(tmp_path, demo_tables)
    labeled = demo_tables["labeled"]
    features = np.asarray(labeled["features"]).copy()
    features[:40] *= 1.01  # 40 windows the models never saw (a scaled copy is a new window here), 58 seen
    source = windows_file(tmp_path, labeled, features=features)
    assert main(["predict", str(source), "--out", str(tmp_path / "p.parquet"),
                 "--artifacts-dir", str(tmp_path / "artifacts"), *ENSEMBLE]) == 0
    out = capsys.readouterr().out
    assert "note: 58 of these 98 windows are rows of the labeled file" in out
    pred = deployed.predict_proba(features[:40]).argmax(1)
    y = (np.asarray(labeled["label"][:40]) == "retracement").astype(int)
    from moola.training.metrics import macro_f1

    assert f"macro F1 on the 40 windows never seen: {macro_f1(y, pred, 2):.3f}" in out


def test_predict_never_writes_over_its_input(tmp_path, demo_tables, capsys):
    saved_ensemble(tmp_path, demo_tables)
    source = windows_file(tmp_path, demo_tables["unlabeled"])
    before = source.read_bytes()
    assert main(["predict", str(source), "--out", str(source), "--artifacts-dir", str(tmp_path / "artifacts"),
                 *ENSEMBLE]) == 2
    assert "is the windows file" in capsys.readouterr().err and source.read_bytes() == before


def predict_error(tmp_path, source, capsys, *extra) -> str:
    assert main(["predict", str(source), "--out", str(tmp_path / "p.parquet"),
                 "--artifacts-dir", str(tmp_path / "artifacts"), "--results", str(tmp_path / "results.jsonl"),
                 "--model", "ensemble", *extra]) == 2
    assert not (tmp_path / "p.parquet").exists()
    return capsys.readouterr().err


def test_predict_without_an_approved_model_names_the_gate_that_failed(tmp_path, demo_tables, capsys):
    append_line(tmp_path / "results.jsonl", build_line("2_control_minirocket", "failed", run_id="r9",
                                                       reason="MiniRocket val_f1 0.905 >= smoke 0.866"))
    err = predict_error(tmp_path, windows_file(tmp_path, demo_tables["unlabeled"]), capsys)
    assert "no ensemble model at" in err
    assert "gate 2_control_minirocket failed: MiniRocket val_f1 0.905 >= smoke 0.866" in err
    assert "Fix:" in err


@pytest.mark.parametrize("status, deliverable, shuffled, said", [
    ("failed", False, False, "gate 7_ensemble failed"),
    ("pending", False, False, "gate 7_ensemble pending"),
    ("passed", True, True, "negative-control"),
])
def test_predict_refuses_a_model_its_gate_did_not_approve(tmp_path, demo_tables, capsys, status, deliverable,
                                                          shuffled, said):
    saved_ensemble(tmp_path, demo_tables, status=status, deliverable=deliverable, train_labels_shuffled=shuffled)
    err = predict_error(tmp_path, windows_file(tmp_path, demo_tables["unlabeled"]), capsys)
    assert "is not approved" in err and said in err


def test_predict_says_an_ensemble_that_warned_is_approved_with_a_warning(tmp_path, demo_tables, capsys):
    saved_ensemble(tmp_path, demo_tables, status="warning")
    assert main(["predict", str(windows_file(tmp_path, demo_tables["unlabeled"])), "--out", str(tmp_path / "p.csv"),
                 "--artifacts-dir", str(tmp_path / "artifacts"), *ENSEMBLE]) == 0
    assert "approved with a warning" in capsys.readouterr().out


@pytest.mark.parametrize("cut, found", [(lambda x: x[:, :50], "50 bars x 4 values"),
                                        (lambda x: x[..., :3], "105 bars x 3 values")])
def test_predict_refuses_windows_of_another_shape(tmp_path, demo_tables, capsys, cut, found):
    saved_ensemble(tmp_path, demo_tables)
    source = windows_file(tmp_path, demo_tables["unlabeled"], features=cut(demo_tables["unlabeled"]["features"]))
    err = predict_error(tmp_path, source, capsys)
    assert "expected windows of 105 bars x 4 values (ohlc" in err and found in err and "Fix: cut windows of 105" in err


def test_predict_lists_nan_and_inf_bars_with_their_rows(tmp_path, demo_tables, capsys):
    saved_ensemble(tmp_path, demo_tables)
    features = demo_tables["unlabeled"]["features"].copy()
    features[3, 10, 0] = np.nan
    features[5, 11, 3] = np.inf
    err = predict_error(tmp_path, windows_file(tmp_path, demo_tables["unlabeled"], features=features), capsys)
    assert "found NaN in rows 3 (1 in all)" in err and "found inf in rows 5 (1 in all)" in err
    assert "OHLC" not in err  # a non-finite bar is reported once, not again as a broken bar


def test_predict_refuses_invalid_ohlc_bars(tmp_path, demo_tables, capsys):
    saved_ensemble(tmp_path, demo_tables)
    features = demo_tables["unlabeled"]["features"].copy()
    features[7, 20, 1] = features[7, 20, 2] - 1  # high below low
    err = predict_error(tmp_path, windows_file(tmp_path, demo_tables["unlabeled"], features=features), capsys)
    assert "high < low in rows 7" in err


def test_predict_refuses_labels_the_model_does_not_know(tmp_path, demo_tables, capsys):
    saved_ensemble(tmp_path, demo_tables)
    labels = list(demo_tables["labeled"]["label"])
    labels[0] = "breakout"
    err = predict_error(tmp_path, windows_file(tmp_path, demo_tables["labeled"], label=labels), capsys)
    assert "labels among the model's classes" in err and "breakout" in err


def test_predict_refuses_an_artifact_of_another_format(tmp_path, demo_tables, capsys):
    _, path = saved_ensemble(tmp_path, demo_tables)
    state, metadata = artifacts.load_checkpoint(path)
    artifacts.save_checkpoint(path, state, {**metadata, "format": 0, "versions": {"moola": "0.0.1", "torch": "1.13"}})
    err = predict_error(tmp_path, windows_file(tmp_path, demo_tables["unlabeled"]), capsys)
    assert "made by moola 0.0.1, torch 1.13; this is moola" in err and "format 1" in err and "Fix: rerun" in err


def test_predict_refuses_a_damaged_copy_by_its_digest(tmp_path, demo_tables, capsys):
    _, path = saved_ensemble(tmp_path, demo_tables)
    state, metadata = artifacts.load_checkpoint(path)
    key = next(k for k in state if k.startswith("calibrator.baseline."))
    state[key] = state[key].clone()
    state[key][0] += 1e-7  # one knot, far from any reference window: only the digest can tell
    artifacts.save_checkpoint(path, state, metadata)
    assert "sha256 differs" in predict_error(tmp_path, windows_file(tmp_path, demo_tables["unlabeled"]), capsys)


def test_predict_refuses_a_file_that_no_longer_computes_its_reference_probabilities(tmp_path, demo_tables, capsys):
    from moola.deploy.model import digest

    _, path = saved_ensemble(tmp_path, demo_tables)
    state, metadata = artifacts.load_checkpoint(path)
    key = next(k for k in state if k.startswith("member.finetuned.classifier") and k.endswith("weight"))
    state[key] = state[key] + 0.5  # intact bytes computing other numbers (another kernel, another version)
    artifacts.save_checkpoint(path, state, {**metadata, "sha256": digest(state)})
    with pytest.raises(DeploymentError, match="reference windows it now gives probabilities up to"):
        load_deployed(path)
    assert "reference windows" in predict_error(tmp_path, windows_file(tmp_path, demo_tables["unlabeled"]), capsys)


def test_predict_refuses_an_output_of_another_format(tmp_path, demo_tables, capsys):
    saved_ensemble(tmp_path, demo_tables)
    source = windows_file(tmp_path, demo_tables["unlabeled"])
    assert main(["predict", str(source), "--out", str(tmp_path / "p.txt"),
                 "--artifacts-dir", str(tmp_path / "artifacts")]) == 2
    assert "expected a file ending in .parquet or .csv" in capsys.readouterr().err


def test_predict_with_a_single_gate_model_reads_its_checkpoint(tmp_path, demo_tables, capsys):
    torch.manual_seed(0)
    model = EnhancedSimpleLSTM(4, 2, 8, 1).eval()
    from moola import models

    metadata = {"architecture": models.architecture(model), "input": INPUT, "classes": CLASSES,
                "gate": {"gate": "4_finetune_enhanced", "status": "passed", "run_id": "r", "deliverable": True}}
    artifacts.save_checkpoint(tmp_path / "artifacts" / artifacts.FINETUNED, model.state_dict(), metadata)
    source = windows_file(tmp_path, demo_tables["unlabeled"])
    assert main(["predict", str(source), "--out", str(tmp_path / "p.parquet"), "--artifacts-dir",
                 str(tmp_path / "artifacts"), *ENSEMBLE, "--model", "finetuned"]) == 0
    table = pd.read_parquet(tmp_path / "p.parquet")
    assert set(table["members"]) == {"finetuned (uncalibrated softmax)"}
    np.testing.assert_allclose(table[["p_consolidation", "p_retracement"]].sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_predict_on_a_missing_device_says_so(tmp_path, demo_tables, capsys):
    saved_ensemble(tmp_path, demo_tables)
    err = predict_error(tmp_path, windows_file(tmp_path, demo_tables["unlabeled"]), capsys, "--device", "cuda")
    assert "--device cuda: CUDA is not available" in err


def test_predict_on_a_missing_windows_file_says_so(tmp_path, demo_tables, capsys):
    saved_ensemble(tmp_path, demo_tables)
    err = predict_error(tmp_path, tmp_path / "nowhere.parquet", capsys)
    assert "nowhere.parquet: expected a parquet file of windows in the data contract, found no such file" in err


@pytest.mark.slow
def test_gate7_saves_the_ensemble_and_predict_gives_the_probabilities_of_the_session_that_saved_it(
        pytester, tmp_path_factory, tmp_path):
    from .gate_runs import ensemble_round_trip, small_demo

    line, table, session = ensemble_round_trip(pytester, small_demo(tmp_path_factory), tmp_path, "cpu")
    assert set(table["members"]) == {"+".join(line["members_used"])}
    np.testing.assert_allclose(table[["p_consolidation", "p_retracement"]].to_numpy()[: len(session)], session,
                               atol=1e-6)
    # The report draws the real line: its reliability diagrams come from the line alone.
    from moola.report.page import count_parts, render_html

    page = render_html([line])
    assert "could not draw" not in page and count_parts(page)[1] >= 3  # forest plot, reliability, timings
