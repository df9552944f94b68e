"""`moola report --html` / `--compare`: the page draws every section from the results lines, fetches
nothing, and says why a section has nothing to draw instead of failing."""

import gc
import re
from html.parser import HTMLParser

import pytest
from matplotlib.figure import Figure

from moola.__main__ import main
from moola.report.compare import compare_runs, format_comparison
from moola.report.page import PLOT_TAG, count_parts, forest_rows, lr_series, render_html
from moola.results import GATES, append_line, build_line

HEADINGS = ["Run", "Gates", "Which model to use (moola select)", "Comparisons (forest plot)", "Pretraining curves (gate 3)",
            "Fine-tuning curves", "Confusion matrices", "Reliability diagrams (gate 7)",
            "Pseudo-samples (gate 5)", "Timings"]
CONTEXT = {"profile": "quick", "device": "cpu", "seed": 17,
           "data": {"fingerprint": "f5235c0818f9f65b", "n_train": 78, "n_val": 20,
                    "n_unlabeled": 11873, "classes": ["consolidation", "retracement"],
                    "window_shape": [105, 4], "train_labels": "as given"},
           "evaluation": {"cv": "blocked", "folds": 5, "seeds": [17, 18], "gate_policy": "ci",
                          "description": "blocked, 5 folds in time order, 2 seeds"},
           "versions": {"moola": "0.1.0", "torch": "2.1.0", "numpy": "1.26.4", "git": "abc1234"}}
PHASES = (("frozen", ["attention", "classifier"]),
          ("unfreeze_l1", ["encoder.l1", "attention", "classifier"]))
STOPPED = f"session stopped after gate {GATES[2]} failed (-x)"


def finetune_history(epochs_per_phase: int = 3) -> list:
    """As `moola.training.classifier` records it: the training groups' LRs per epoch."""
    history = []
    for phase, groups in PHASES:
        for epoch in range(1, epochs_per_phase + 1):
            step = len(history)
            lrs = {group: 1e-3 * (0.3 if group.startswith("encoder") else 1) for group in groups}
            history.append({"phase": phase, "epoch": epoch, "loss": 0.7 - 0.05 * step,
                            "train_acc": 0.5 + 0.05 * step, "lr": 1e-3, "lrs": lrs})
    return history


def comparison(baseline: str, delta: float, **more) -> dict:
    return {"baseline_gate": baseline, "baseline_f1": 0.8, "delta": delta,
            "delta_ci95": [round(delta - 0.05, 3), round(delta + 0.05, 3)], "policy": "ci",
            "per_fold_delta": [delta - 0.02, delta, delta + 0.03, delta, delta + 0.01],
            "per_seed_delta": [delta - 0.01, delta + 0.01], **more}


def model_metrics(f1: float, **more) -> dict:
    confusion = {"classes": ["consolidation", "retracement"], "counts": [[100, 20], [16, 60]],
                 "seeds": 2}
    return {"val_f1": f1, "confusion": confusion, **more}


def reliability(shift: float) -> dict:
    empty = [None] * 5  # no row below 0.5 confidence with two classes
    before = {"confidence": empty + [0.55, 0.65, 0.75, 0.85, 0.95],
              "accuracy": empty + [0.5 + shift, 0.6, 0.7 + shift, 0.8, 0.9],
              "count": [0] * 5 + [10, 20, 30, 20, 18]}
    return {"before": before, "after": {**before, "accuracy": before["confidence"]}}


def pseudo_metrics() -> dict:
    ks = {"net_change": {"statistic": 0.115, "p_value": 0.48},
          "mean_bar_range": {"statistic": 0.3, "p_value": 0.04}}
    return model_metrics(0.91, n_synthetic=156, cap=156, ks=ks,
                         quality={"min": 0.91, "median": 0.95, "max": 0.98},
                         generators={"jitter": 80, "time_warp": 76},
                         filter_counts={"generated": 312, "quality": 246, "capped": 156})


def full_run(run_id: str = "run_full", head_lr: float = 1e-3, smoke_f1: float = 0.85) -> list:
    """Every gate passed (7 warned), with every field the report draws."""
    stats = {name: {"quantiles": [i / 10 for i in range(11)], "real": [i / 10 for i in range(11)],
                    "synthetic": [i * 0.11 for i in range(11)], "n_real": 78, "n_synthetic": 156}
             for name in ("net_change", "mean_bar_range")}
    pretrain_history = [{"epoch": e, "train_loss": 1 / e, "train_reconstruction": 1 / e,
                         "val_loss": 1.1 / e, "lr": 1e-3 / e} for e in range(1, 9)]
    pretrain_metrics = {"best_epoch": 8, "best_val_loss": 0.14, "pretrain_duration_s": 121.0,
                        "encoder_obtained_s": 1.9, "world_size": 2, "global_batch": 512, "windows_per_s": 5123.4}
    calibration = {"bins": 10, "models": {"enhanced_simple_lstm": reliability(0.0),
                                          "ensemble": reliability(0.02)}}
    ensemble_metrics = {"val_f1": 0.89, "ece_before": 0.18, "ece_after": 0.10,
                        "members": {"enhanced_simple_lstm": {"ece_before": 0.09,
                                                             "ece_after": 0.05}}}
    chance = {"balanced_acc": 0.9, "chance": 0.5, "delta": 0.4, "delta_ci95": [0.33, 0.47]}
    gates = [  # gate, config, metrics, comparison, extra
        (GATES[0], {}, {}, None, {}),
        (GATES[1], {"head_lr": head_lr}, model_metrics(smoke_f1), None,
         {"history": finetune_history()}),
        (GATES[2], {"transform": "MiniRocketMultivariate"}, model_metrics(0.80),
         comparison(GATES[2], round(smoke_f1 - 0.80, 3), candidate_gate=GATES[1]), {}),
        (GATES[3], {"epochs": 8}, pretrain_metrics,
         {"baseline": "random_encoder", "baseline_balanced_acc": 0.83, "delta": 0.02},
         {"history": pretrain_history, "pretraining": "from scratch"}),
        (GATES[4], {"head_lr": head_lr}, model_metrics(0.90),
         comparison(GATES[1], round(0.90 - smoke_f1, 3), chance=chance),
         {"history": finetune_history(), "history_of": "the saved model's fit"}),
        (GATES[5], {"tolerance": 0.02, "ks_alpha": 0.1}, pseudo_metrics(),
         comparison(GATES[4], 0.01),
         {"history": finetune_history(), "synthetic_stats": stats}),
        (GATES[6], {"epochs": 25}, model_metrics(0.70),
         comparison(GATES[6], 0.20, candidate_gate=GATES[4]), {"history": finetune_history()}),
        (GATES[7], {"tolerance": 0.01}, ensemble_metrics,
         comparison("enhanced_simple_lstm", -0.01), {"calibration": calibration}),
    ]
    return [build_line(gate, "warning" if gate == GATES[7] else "passed", run_id=run_id,
                       duration_s=10.0 + n, model=f"model_{n}", config=config, metrics=metrics,
                       comparison=compared, extra=extra, context=CONTEXT,
                       reason="best member beats the ensemble\n- by 0.01" if n == 7 else None)
            for n, (gate, config, metrics, compared, extra) in enumerate(gates)]


def stopped_run(run_id: str = "run_stopped", head_lr: float = 1e-3) -> list:
    """Gate 2 failed; 3-7 not_run (empty metrics and config, comparison null), as the plugin
    writes them."""
    lines = full_run(run_id, head_lr=head_lr)[:3]
    lines[2] = {**lines[2], "status": "failed", "reason": "smoke − MiniRocket does not exclude 0"}
    return lines + [build_line(GATES[n], "not_run", run_id=run_id, context=CONTEXT, reason=STOPPED)
                    for n in range(3, 8)]


def old_run() -> list:
    """As an older moola wrote them: no confusion, calibration, synthetic_stats, evaluation,
    per-group LRs, or histories for gates 1 and 6."""
    lines = full_run("run_old")
    for line in lines:
        line["metrics"].pop("confusion", None)
        for key in ("calibration", "synthetic_stats", "evaluation"):
            line.pop(key, None)
        if line["gate"] in (GATES[4], GATES[5]):
            line["history"] = [{k: v for k, v in h.items() if k != "lrs"} for h in line["history"]]
        elif line["gate"] in (GATES[1], GATES[6]):
            line.pop("history")
    return lines


VOID_TAGS = frozenset({"meta", "img", "br", "link", "input", "hr"})  # no end tag


class TagBalance(HTMLParser):
    def __init__(self):
        super().__init__()
        self.open, self.problems = [], []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID_TAGS:
            self.open.append(tag)

    def handle_endtag(self, tag):
        if not self.open or self.open.pop() != tag:
            self.problems.append(tag)


def check_page(page: str) -> None:
    """Parses with balanced tags, fetches nothing, runs nothing, and no section fell back."""
    parser = TagBalance()
    parser.feed(page)
    parser.close()
    assert parser.problems == [] and parser.open == []
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page and "url(" not in page
    assert "could not draw" not in page


def headings(page: str) -> list:
    return re.findall(r"<h2>(.*?)</h2>", page)


@pytest.fixture(scope="module")
def full_page() -> str:
    return render_html(full_run(), results="results.jsonl")


def test_full_run_renders_every_section_self_contained(full_page):
    check_page(full_page)
    assert headings(full_page) == HEADINGS
    # forest, pretraining, 4 fine-tuning (gates 1, 4, 5, 6), confusion, reliability, ECDFs, timings
    assert count_parts(full_page) == (10, 10)
    assert full_page.count(PLOT_TAG) == full_page.count("<img ")


@pytest.mark.parametrize("text", [
    "run_full", "blocked, 5 folds in time order, 2 seeds", "consolidation, retracement",
    "78 train / 20 val",
    "105 × 4", "11873", "torch 2.1.0", "+0.050 [+0.000, +0.100] within noise",
    "balanced acc − chance +0.400 [+0.330, +0.470] better",
    "best member beats the ensemble\n- by 0.01",  # a multi-line reason keeps its lines
    "generated 312 → quality 246 → capped 156", "KS 0.300, p 0.040 &lt; 0.1 (fails)",
    "<td>enhanced_simple_lstm</td><td class=\"num\">0.090</td><td class=\"num\">0.050</td>",
    "pretraining took 121.0 s on 2 torchrun ranks (global batch 512) at 5123 training windows/s",
    "Best epoch 8 of 8, val loss 0.1400",
    "\"fine-tuning curves of 4_finetune_enhanced (model_4, the saved model&#x27;s fit)\"",
])
def test_full_run_page_carries_the_numbers(full_page, text):
    assert text in full_page
    assert "NEGATIVE CONTROL" not in full_page


def test_status_colours_follow_the_status(full_page):
    assert '<span class="status s-passed">passed</span>' in full_page
    assert '<span class="status s-warning">warning</span>' in full_page
    assert ".s-warning { color: #b58100; }" in full_page


def test_forest_rows_carry_thresholds_the_chance_row_and_gate_3_without_ci():
    rows = {row.label: row for row in forest_rows(full_run())}
    probe = rows[f"{GATES[3]} — linear probe minus random_encoder (balanced accuracy)"]
    assert probe.ci95 is None and probe.delta == 0.02
    assert rows[f"{GATES[4]} — balanced accuracy minus chance"].ci95 == (0.33, 0.47)
    thresholds = {label.split(" — ")[0]: row.threshold for label, row in rows.items()
                  if row.threshold is not None}
    assert thresholds == {GATES[5]: -0.02, GATES[7]: -0.01}
    assert len(rows[f"{GATES[2]} — {GATES[1]} minus {GATES[2]}"].per_fold) == 5


def test_lr_series_reads_per_group_rates_and_the_older_single_rate():
    series = lr_series(finetune_history(epochs_per_phase=1))
    assert series == {"attention": [1e-3, 1e-3], "classifier": [1e-3, 1e-3],
                      "encoder.l1": [None, 3e-4]}  # None while the group was frozen
    assert lr_series([{"lr": 1e-3}, {"lr": 5e-4}]) == {"lr": [1e-3, 5e-4]}
    assert lr_series([{"loss": 0.5}]) == {}


def test_negative_control_run_shows_the_banner():
    data = {**CONTEXT["data"], "train_labels": "shuffled (seed 17)"}
    lines = [build_line(GATES[0], "passed", run_id="r", context={**CONTEXT, "data": data})]
    assert "NEGATIVE CONTROL" in render_html(lines)


def test_strings_from_the_file_are_escaped():
    lines = [build_line(GATES[2], "failed", run_id="<r>", reason="<script>x</script> & $x$",
                        model="m", metrics={"val_f1": 0.5}, context=CONTEXT,
                        comparison=comparison("<b>$a$</b>", 0.1))]
    page = render_html(lines)
    check_page(page)
    assert "&lt;script&gt;x&lt;/script&gt; &amp; $x$" in page and "&lt;r&gt;" in page


def test_stopped_run_says_why_the_later_sections_are_empty():
    page = render_html(stopped_run())
    check_page(page)
    assert count_parts(page) == (10, 4)  # forest (gate 2), gate 1's curves, confusion, timings
    for gate in (GATES[3], GATES[7], GATES[5]):
        assert f"gate {gate} not_run: {STOPPED}." in page
    assert f"Not drawn: gates {GATES[4]}, {GATES[5]}, {GATES[6]} not_run: {STOPPED}." in page
    assert '<span class="status s-failed">failed</span>' in page
    assert '<span class="status s-not_run">not_run</span>' in page


def test_a_run_with_failed_skipped_and_not_run_gates_renders_each_reason():
    # without -x: gate 2 failed, pytest-dependency skipped 3-6, the session was stopped before 7
    lines = stopped_run("run_mixed")
    skipped = "Skipped: test_pretrained_encoder_passes_linear_probe depends on gate2"
    lines[3:7] = [build_line(GATES[n], "skipped", run_id="run_mixed", context=CONTEXT, reason=skipped)
                  for n in range(3, 7)]
    page = render_html(lines)
    check_page(page)
    assert "could not draw" not in page and count_parts(page) == (10, 4)
    assert f"gate {GATES[3]} skipped: {skipped}." in page and f"gate {GATES[7]} not_run: {STOPPED}." in page
    assert '<span class="status s-skipped">skipped</span>' in page


@pytest.mark.slow  # renders a whole page (~2 s): CI's slow set
def test_lines_of_an_older_moola_render_with_what_they_have():
    page = render_html(old_run())
    check_page(page)
    assert count_parts(page) == (10, 5)  # forest, pretraining, gates 4-5 curves, timings
    before = "not recorded in this results file (written before moola recorded"
    assert f"{before} confusion matrices)" in page
    assert f"gate {GATES[7]}: {before} reliability bins)." in page
    assert "written before moola recorded synthetic_stats" in page and "KS 0.115, p 0.480" in page


def test_a_single_line_renders_every_section():
    page = render_html([build_line(GATES[0], "passed", run_id="one", duration_s=2.0)])
    check_page(page)
    assert headings(page) == HEADINGS
    assert count_parts(page) == (10, 1)  # timings only
    assert f"gate {GATES[3]}: no line in this run (not selected, or the session ended" in page


def test_a_section_that_raises_is_reported_and_the_rest_renders():
    lines = stopped_run()
    lines[1]["history"] = "not a list"  # gate 1's fine-tuning curves
    page = render_html(lines)
    assert page.count("could not draw: ") == 1 and "could not draw: AttributeError" in page
    assert count_parts(page) == (10, 3)


@pytest.mark.slow  # renders the full page again (~3 s): CI's slow set
def test_rendering_leaves_no_figure_alive(full_page):
    import matplotlib.pyplot as plt

    render_html(stopped_run())
    for _ in range(3):  # a log-scaled axis' weakref callbacks free the last figure on a 2nd pass
        gc.collect()
    assert plt.get_fignums() == []
    assert [obj for obj in gc.get_objects() if type(obj) is Figure] == []  # type(): no proxies


def test_render_refuses_lines_of_two_runs():
    with pytest.raises(ValueError, match="expected the lines of one run, found 2 runs"):
        render_html(full_run("a")[:1] + full_run("b")[:1])


def test_compare_lists_changed_settings_and_the_f1_delta():
    compared = compare_runs(full_run("run_a"), full_run("run_b", head_lr=2e-3, smoke_f1=0.80))
    assert {"key": f"{GATES[4]}.head_lr", "a": "0.001", "b": "0.002"} in compared["config"]
    assert len(compared["config"]) == 2  # gates 1 and 4's head_lr; nothing else differs
    smoke = next(g for g in compared["gates"] if g["gate"] == GATES[1])
    assert smoke["f1_delta"] == pytest.approx(-0.05)
    text = format_comparison(compared)
    assert f"{GATES[1]:<22}  passed    passed       0.850     0.800   -0.050" in text
    assert f"{GATES[1]}.head_lr: 0.001 → 0.002" in text
    assert (f"{GATES[2]} — {GATES[1]} minus {GATES[2]}: +0.050 [+0.000, +0.100] within noise → "
            "+0.000 [-0.050, +0.050] within noise") in text


def test_compare_keys_on_one_side_only_and_configs_never_recorded():
    run_a, run_b = full_run("a"), full_run("b")
    run_b[0]["evaluation"] = {**run_b[0]["evaluation"], "embargo": 1}
    added = {"key": "evaluation.embargo", "a": "(absent)", "b": "1"}
    assert added in compare_runs(run_a, run_b)["config"]
    compared = compare_runs(stopped_run(), full_run())
    never = {"key": f"{GATES[5]}.config", "a": "(none: not_run)", "b": "(2 keys)"}
    assert never in compared["config"]
    assert [d["key"] for d in compared["config"] if d["key"].startswith(GATES[5])] == [
        f"{GATES[5]}.config"]  # one row, not one per key


def write_results(path, *runs) -> None:
    for lines in runs:
        for line in lines:
            append_line(path, line)


def test_cli_writes_the_html_and_still_prints_the_table(tmp_path, capsys):
    results, out = tmp_path / "r.jsonl", tmp_path / "report.html"
    write_results(results, stopped_run())
    assert main(["report", str(results), "--html", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"report written to {out} (10 sections, 4 plots)" in printed
    assert "val_f1 0.800" in printed  # the text table
    check_page(out.read_text(encoding="utf-8"))


def test_cli_compare_prints_text_or_adds_a_section(tmp_path, capsys):
    results, out = tmp_path / "r.jsonl", tmp_path / "report.html"
    write_results(results, stopped_run(), stopped_run("run_b", head_lr=2e-3))
    assert main(["report", str(results), "--compare", "run_stopped", "run_b"]) == 0
    printed = capsys.readouterr().out
    assert "run run_b (B) compared with run run_stopped (A)" in printed
    assert f"{GATES[1]}.head_lr: 0.001 → 0.002" in printed
    args = ["report", str(results), "--compare", "run_stopped", "run_b", "--html", str(out)]
    assert main(args) == 0
    page = out.read_text(encoding="utf-8")
    check_page(page)
    assert headings(page)[:2] == ["Compared with run run_stopped", "Run"]
    assert "run run_b" in page and "compared with run" not in capsys.readouterr().out


@pytest.mark.parametrize("args", [["--run-id", "nope"], ["--compare", "run_stopped", "nope"]])
def test_cli_unknown_run_id_exits_2_listing_the_runs(tmp_path, capsys, args):
    results = tmp_path / "r.jsonl"
    write_results(results, stopped_run())
    assert main(["report", str(results), "--html", str(tmp_path / "x.html"), *args]) == 2
    assert "expected a run with id 'nope', found runs run_stopped" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


def test_cli_refuses_run_id_with_compare(tmp_path, capsys):
    results = tmp_path / "r.jsonl"
    write_results(results, stopped_run())
    assert main(["report", str(results), "--run-id", "a", "--compare", "a", "b"]) == 2
    assert "found both" in capsys.readouterr().err
