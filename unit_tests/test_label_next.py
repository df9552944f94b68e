"""`python -m moola label-next N`: proposals that never share bars with a labeled row or with each
other, recorded; and the labeling page driven in a real headless browser (Debian's chromium), its
export merged by add-labels."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moola.__main__ import main
from moola.data.dataset import LABELED
from moola.data.overlap import shared_bars
from moola.data.parquet import read_windows
from moola.labeling.folder import read_folder, resolve_root
from moola.labeling.propose import propose
from unit_tests import browser


@pytest.fixture()
def user(tmp_path, user_layout_small) -> Path:
    return Path(shutil.copytree(user_layout_small, tmp_path / "data"))


def _folder(root: Path):
    root, profile = resolve_root(str(root))
    return read_folder(root, profile.data)


@pytest.mark.parametrize("strategy", ["random", "likely-margin",
                                      pytest.param("margin-diverse", marks=pytest.mark.slow)])  # alike, ~0.8 s
def test_proposals_share_no_bars_with_labeled_rows_or_each_other_and_repeat_with_the_seed(user, tmp_path, strategy):
    folder = _folder(user)
    from moola.labeling.propose import scoring_model

    args = (folder, 8, strategy, 17, *scoring_model(tmp_path / "no-artifacts", tmp_path / "no-results.jsonl"))
    proposal = propose(*args)
    chosen = folder.pool.features[proposal.pool_rows]
    assert len(proposal.pool_rows) == 8 and len(set(proposal.pool_rows.tolist())) == 8
    assert not len(shared_bars(chosen, folder.labeled.features)), "a proposal shares bars with a labeled row"
    pairs = shared_bars(chosen, chosen)
    assert not len(pairs[pairs[:, 0] != pairs[:, 1]]), "two proposals share bars"
    assert propose(*args).pool_rows.tolist() == proposal.pool_rows.tolist()
    assert proposal.record["strategy"] == strategy and proposal.record["n_candidates"] < len(folder.pool)
    if strategy != "random":  # no model file here: the representation alone, and the record says why
        assert "no model" in proposal.record["model"]
        assert ("CoreSet" in proposal.record["representation"]) == (strategy == "margin-diverse")
    if strategy == "likely-margin":
        assert "nearest the labeled rows" in proposal.record["shortlist"] and "likeness alone" in proposal.record["order"]


def test_the_margin_strategy_shortlists_where_the_model_is_least_sure(user, tmp_path, monkeypatch):
    """With a model, margin-diverse picks from the SHORTLIST x N candidates with the smallest margins, and
    likely-margin takes the smallest margins among its shortlist first."""
    folder = _folder(user)

    class Sure:  # sure of every window but the 40% whose first close is highest (more than 10 x 5 candidates)
        classes = ("consolidation", "retracement")
        spec = type("Spec", (), {"needs_spans": False})()
        kind = "test"

        def predict_proba(self, windows, device):
            score = windows[:, 0, 3] / windows[:, 0, 3].max()
            p = np.where(score > np.quantile(score, 0.6), 0.5, 0.99)
            return np.stack([p, 1 - p], axis=1)

    from moola.labeling import propose as module

    proposal = propose(folder, 5, "margin-diverse", 17, Sure(), "test model")
    assert (proposal.margins < 0.01).all(), proposal.margins
    monkeypatch.setattr(module, "SHORTLIST", 1000)  # every candidate shortlisted: the core set alone decides
    assert (propose(folder, 5, "margin-diverse", 17, Sure(), "test model").margins > 0.5).any()
    monkeypatch.setattr(module, "SHORTLIST", 100)
    likely = propose(folder, 5, "likely-margin", 17, Sure(), "test model")
    assert (likely.margins < 0.01).all() and "smallest first" in likely.record["order"]


def test_label_next_writes_a_self_contained_page_and_a_record(user, tmp_path, capsys):
    out = tmp_path / "page.html"
    artifacts = tmp_path / "artifacts"
    assert main(["label-next", "6", "--data-dir", str(user), "--out", str(out), "--artifacts-dir", str(artifacts),
                 "--strategy", "random"]) == 0
    printed = capsys.readouterr().out
    page = out.read_text()
    assert "<script src" not in page and "<link" not in page and "http" not in page.split("<script>")[1]
    data = json.loads(page.split("const DATA = ", 1)[1].split(";\n", 1)[0])
    assert len(data["windows"]) == 6 and data["prediction_bars"] == [30, 74] and data["has_spans"]
    record = json.loads(next((artifacts / "labeling").glob("label-next-*.json")).read_text())
    assert [w["window_id"] for w in record["windows"]] == [w["id"] for w in data["windows"]]
    assert record["strategy"] == "random" and "add-labels labels.csv" in printed


@pytest.mark.slow
def test_the_page_labels_spans_with_the_keyboard_and_mouse_and_its_export_merges(user, tmp_path):
    why = browser.available()
    if why:
        if os.environ.get("MOOLA_REQUIRE_BROWSER"):
            pytest.fail(f"MOOLA_REQUIRE_BROWSER is set and {why}")
        pytest.skip(why)
    from selenium.webdriver.common.keys import Keys

    page = tmp_path / "page.html"
    assert main(["label-next", "7", "--data-dir", str(user), "--out", str(page), "--strategy", "random",
                 "--artifacts-dir", str(tmp_path / "artifacts")]) == 0
    ids = [w["id"] for w in json.loads(page.read_text().split("const DATA = ", 1)[1].split(";\n", 1)[0])["windows"]]
    tab = browser.Page(page, tmp_path / "downloads")
    try:
        tab.keys("1")  # a class without a selection: refused, with what to do
        assert "Select the pattern's bars first" in tab.text("status")
        tab.select_bars(6)  # bars 30-35
        tab.keys("1")
        tab.keys(*[Keys.ARROW_RIGHT] * 3)  # the cursor on to bar 38 (the selection ends)
        tab.keys(*[Keys.ARROW_RIGHT] * 2, shift=True)  # a second span on the same window: bars 38-40
        tab.keys("2", "j")
        tab.drag_bars(52, 57, 105)  # window 2 by mouse, inside the shaded bars
        tab.keys("2")
        assert ids[1] in tab.text("status") and "retracement on bars 52-57" in tab.text("status")
        tab.drag_bars(60, 60, 105)  # a click places the cursor: no one-bar span
        tab.keys("1")
        assert "Select the pattern's bars first" in tab.text("status")
        tab.keys("j", "n")  # window 3: neither (moves on to window 4)
        tab.keys("u")  # undoing it goes back to window 3
        assert f"window 3 of 7: {ids[2]}" in tab.text("title")
        tab.keys("n")
        tab.select_bars(5)
        tab.keys("1")
        tab.keys("u")  # undo the last label
        assert "Undone" in tab.text("status")
        tab.select_bars(4)
        tab.keys("2", "j")
        for _ in range(2):  # windows 5 and 6
            tab.select_bars(7)
            tab.keys("1", "j")
        assert "6 of 7 windows answered, 6 span(s) labeled" in tab.text("progress-text")
        progress = tab.driver.find_element("id", "progress")
        assert (progress.get_attribute("value"), progress.get_attribute("max")) == ("6", "7")
        csv = tab.export()
    finally:
        tab.close()
    rows = pd.read_csv(csv, dtype=str, keep_default_na=False)
    assert list(rows.columns) == ["window_id", "label", "expansion_start", "expansion_end"]
    assert rows.values.tolist()[:2] == [[ids[0], "consolidation", "30", "35"], [ids[0], "retracement", "38", "40"]]
    assert rows.iloc[3].tolist() == [ids[2], "neither", "", ""]
    assert rows.iloc[4].tolist() == [ids[3], "retracement", "30", "33"], "undo did not remove the last label"
    assert rows.iloc[2].tolist() == [ids[1], "retracement", "52", "57"]
    assert main(["add-labels", str(csv), "--data-dir", str(user)]) == 0
    assert len(read_windows(user / LABELED, labeled=True)[0]) == 98 + 6
