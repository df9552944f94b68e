"""The results plugin, exercised on fake gates through pytester, read back from the JSONL file."""

import json
from pathlib import Path

import pytest

from moola.results import read_lines

ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

GATE = '''
import pytest

@pytest.fixture(scope="session")
def {fixture}():
    {fixture_body}

@pytest.mark.dependency(name="gate{n}", depends={depends}, scope="session")
def test_gate_{n}({fixture}, gate_record):
    gate_record.model = "fake"
    gate_record.metrics = {{"val_f1": 0.{n}}}
    {body}
'''


@pytest.fixture
def suite(pytester):
    pytester.makeconftest(ROOT_CONFTEST.read_text())

    def write(bodies: dict, fixture_bodies: dict | None = None):
        for n, body in bodies.items():
            fixture_body = (fixture_bodies or {}).get(n, "return 1")
            pytester.makepyfile(**{f"test_{n}_fake_gate": GATE.format(
                n=n, depends=[f"gate{n - 1}"] if n else [], body=body, fixture=f"trained_{n}",
                fixture_body=fixture_body)})
        return pytester

    return write


def lines(pytester):
    return {line["gate"]: line for line in read_lines(pytester.path / "gated_workflow_results.jsonl")}


def test_passing_gates_write_one_passed_line_each(suite):
    pytester = suite({0: "pass", 1: "pass", 2: "pass"})
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=3)
    result = lines(pytester)
    assert [line["status"] for line in result.values()] == ["passed"] * 3
    assert result["1_fake_gate"]["metrics"] == {"val_f1": 0.1}
    assert result["1_fake_gate"]["model"] == "fake" and result["1_fake_gate"]["duration_s"] >= 0


def test_failed_assertion_records_its_message_and_skips_downstream(suite):
    pytester = suite({0: "pass", 1: "assert 0.4 > 0.5, 'val_f1 0.400 <= smoke 0.500'", 2: "pass"})
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1, failed=1, skipped=1)
    result = lines(pytester)
    assert result["1_fake_gate"]["status"] == "failed"
    assert result["1_fake_gate"]["reason"] == "val_f1 0.400 <= smoke 0.500"
    assert result["2_fake_gate"]["status"] == "skipped"
    assert "depends on gate1" in result["2_fake_gate"]["reason"]


def test_fixture_crash_is_an_error_line_with_the_exception(suite):
    pytester = suite({0: "pass", 1: "pass"}, {1: "raise RuntimeError('CUDA out of memory')"})
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1, errors=1)
    line = lines(pytester)["1_fake_gate"]
    assert line["status"] == "error"
    assert line["reason"] == "RuntimeError: CUDA out of memory"


def test_stop_on_first_failure_marks_the_rest_not_run(suite):
    pytester = suite({0: "pass", 1: "assert False, 'no gain'", 2: "pass", 3: "pass"})
    pytester.runpytest_inprocess("-x", "-p", "no:cacheprovider")
    result = lines(pytester)
    assert [result[g]["status"] for g in ("0_fake_gate", "1_fake_gate", "2_fake_gate", "3_fake_gate")] == \
        ["passed", "failed", "not_run", "not_run"]
    assert "1_fake_gate failed (-x)" in result["3_fake_gate"]["reason"]


def test_advisory_gate_writes_warning_and_shows_in_warnings_summary(suite):
    pytester = suite({0: "gate_record.warn('SimpleLSTM 0.9 >= enhanced 0.8')"})
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*GateWarning: SimpleLSTM 0.9 >= enhanced 0.8*"])
    line = lines(pytester)["0_fake_gate"]
    assert line["status"] == "warning" and line["reason"] == "SimpleLSTM 0.9 >= enhanced 0.8"


def test_keyword_selection_runs_a_gate_whose_dependency_is_outside_it(suite):
    pytester = suite({0: "pass", 1: "pass", 2: "pass"})
    pytester.runpytest_inprocess("-k", "test_gate_2", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert list(lines(pytester)) == ["2_fake_gate"]


def test_start_and_end_gate_select_a_range(suite):
    pytester = suite({0: "pass", 1: "pass", 2: "pass", 3: "pass"})
    pytester.runpytest_inprocess("--start-gate", "1", "--end-gate", "2", "-p", "no:cacheprovider") \
        .assert_outcomes(passed=2)
    assert list(lines(pytester)) == ["1_fake_gate", "2_fake_gate"]


def test_unknown_override_is_a_usage_error_listing_valid_keys(suite):
    pytester = suite({0: "pass"})
    result = pytester.runpytest_inprocess("--set", "pretrain.nope=1", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown key 'pretrain.nope'*pretrain.batch_size*"])


def test_json_report_environment_is_filled(suite):
    pytester = suite({0: "pass"})
    pytester.runpytest_inprocess("--json-report", "--json-report-file=report.json", "-p", "no:cacheprovider")
    environment = json.loads((pytester.path / "report.json").read_text())["environment"]
    assert environment["moola"]["profile"] in ("quick", "full") and "Python" in environment


@pytest.mark.slow  # a pytest subprocess importing torch (~4 s); CI runs it on both stacks
def test_a_library_warning_never_fails_a_gate_and_is_recorded_in_its_line(suite):
    # torch 2.1 warns "TypedStorage is deprecated" on every torch.load: under the project's own
    # pytest.ini a gate whose fixture (or test) triggers such a warning still passes.
    pytester = suite({0: "pass", 1: "warnings.warn('Storage is deprecated', UserWarning)", 2: "pass"},
                     {1: "warnings.warn('old API', DeprecationWarning); return 1"})
    path = pytester.path / "test_1_fake_gate.py"
    path.write_text("import warnings\n" + path.read_text())
    path = pytester.path / "test_2_fake_gate.py"  # a warning while collecting: goes in the first line
    path.write_text("import warnings\nwarnings.warn('at import', UserWarning)\n" + path.read_text())
    pytester.makefile(".ini", pytest=(ROOT_CONFTEST.parent / "pytest.ini").read_text())
    # A subprocess: in-process, the strict filters of this unit test would leak into the inner run.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", ".")
    result.assert_outcomes(passed=3, warnings=3)
    result.stdout.fnmatch_lines(["*UserWarning: Storage is deprecated*"])
    result = lines(pytester)
    assert [line["status"] for line in result.values()] == ["passed"] * 3
    assert [(w["category"], w["message"]) for w in result["1_fake_gate"]["warnings"]] == [
        ("DeprecationWarning", "old API"), ("UserWarning", "Storage is deprecated")]
    assert [w["message"] for w in result["0_fake_gate"]["warnings"]] == ["at import"]
    assert "warnings" not in result["2_fake_gate"]


def test_unit_tests_turn_any_other_warning_into_an_error():
    import warnings

    with pytest.raises(UserWarning, match="strict"):
        warnings.warn("strict", UserWarning)


SAVES_A_MODEL = '''
    from pathlib import Path
    from moola.artifacts import save_checkpoint
    import torch
    settings = request.config.pluginmanager.get_plugin("moola-results").settings
    path = Path("models/enhanced_finetuned_v1.pt")
    save_checkpoint(path, {{"w": torch.zeros(2)}}, {{"gate": {{"gate": "{gate}", "status": "pending",
                                                           "run_id": settings.run_id}}}})
    gate_record.artifacts = {{"model": str(path.resolve())}}
    assert {verdict}, "val_f1 below the rule"
'''


@pytest.mark.parametrize("verdict, status, deliverable", [("False", "failed", False), ("True", "passed", True)])
def test_a_saved_model_says_in_its_metadata_whether_its_gate_passed(pytester, verdict, status, deliverable):
    from moola.artifacts import load_checkpoint

    pytester.makeconftest(ROOT_CONFTEST.read_text())
    pytester.makepyfile(test_4_fake_gate=f'''
import pytest

def test_gate_4(request, gate_record):
{SAVES_A_MODEL.format(gate="4_finetune_enhanced", verdict=verdict)}
''')
    pytester.runpytest_inprocess("-p", "no:cacheprovider")
    [line] = read_lines(pytester.path / "gated_workflow_results.jsonl")
    _, metadata = load_checkpoint(pytester.path / "models/enhanced_finetuned_v1.pt")
    assert line["status"] == status
    assert metadata["gate"]["status"] == status and metadata["gate"]["deliverable"] is deliverable
    assert metadata["gate"]["run_id"] == line["run_id"]


def test_a_model_from_another_run_is_never_marked(tmp_path):
    import torch

    from moola.artifacts import load_checkpoint, mark_gate, save_checkpoint

    path = save_checkpoint(tmp_path / "m.pt", {"w": torch.zeros(1)}, {"gate": {"status": "pending", "run_id": "old"}})
    assert not mark_gate(path, "new", "failed", "no")
    assert load_checkpoint(path)[1]["gate"]["status"] == "pending"


def test_a_model_whose_gate_never_ruled_says_so_at_session_end(pytester):
    """-k augment refits gate 4's model for gate 5: gate 4 never judges that file, and it must not stay pending."""
    from moola.artifacts import load_checkpoint

    pytester.makeconftest(ROOT_CONFTEST.read_text())
    pytester.makepyfile(test_5_fake_gate='''
from pathlib import Path
import torch
from moola.artifacts import save_checkpoint

def test_gate_5(request, gate_record):
    settings = request.config.pluginmanager.get_plugin("moola-results").settings
    save_checkpoint(settings.artifacts_dir / "models/enhanced_finetuned_v1.pt", {"w": torch.zeros(1)},
                    {"gate": {"gate": "4_finetune_enhanced", "status": "pending", "run_id": settings.run_id}})
''')
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    _, metadata = load_checkpoint(pytester.path / "artifacts/models/enhanced_finetuned_v1.pt")
    assert metadata["gate"]["status"] == "not_run" and metadata["gate"]["deliverable"] is False
    assert "did not run in this session" in metadata["gate"]["reason"]


def test_the_baseline_is_never_the_deliverable(tmp_path):
    import torch

    from moola.artifacts import load_checkpoint, mark_gate, save_checkpoint

    path = save_checkpoint(tmp_path / "b.pt", {"w": torch.zeros(1)},
                           {"gate": {"gate": "6_baseline_simplelstm", "status": "pending", "run_id": "r"}})
    assert mark_gate(path, "r", "warning", "SimpleLSTM no worse")
    assert load_checkpoint(path)[1]["gate"]["deliverable"] is False


def test_a_negative_control_model_is_never_the_deliverable(tmp_path):
    import torch

    from moola.artifacts import load_checkpoint, mark_gate, save_checkpoint

    path = save_checkpoint(tmp_path / "n.pt", {"w": torch.zeros(1)}, {"train_labels_shuffled": True, "gate": {
        "gate": "4_finetune_enhanced", "status": "pending", "run_id": "r"}})
    assert mark_gate(path, "r", "passed", None)
    assert load_checkpoint(path)[1]["gate"]["deliverable"] is False


def test_lf_reruns_the_failed_gate_instead_of_skipping_it_for_its_upstream_gate(suite):
    # run 1 fails gate 1; --lf selects gate 1 alone, whose upstream gate 0 is outside the session:
    # pytest-dependency would skip it ("depends on gate0") unless the run counts as narrowed
    pytester = suite({0: "pass", 1: "from pathlib import Path; assert not Path('fail_once').exists(), 'flagged'",
                      2: "pass"})
    (pytester.path / "fail_once").write_text("")
    pytester.runpytest_inprocess().assert_outcomes(passed=1, failed=1, skipped=1)
    (pytester.path / "fail_once").unlink()
    pytester.runpytest_inprocess("--lf").assert_outcomes(passed=1)
    runs = {}
    for line in read_lines(pytester.path / "gated_workflow_results.jsonl"):
        runs.setdefault(line["run_id"], []).append(line)
    first, second = runs.values()
    assert [(line["gate"], line["status"]) for line in second] == [("1_fake_gate", "passed")]
    assert second[0]["scope"]["narrowed"] is True and "--lf" in second[0]["scope"]["selection"]
    assert first[0]["scope"]["gates"] == [0, 1, 2]


def test_ctrl_c_lines_say_interrupted(suite):
    pytester = suite({0: "pass", 1: "raise KeyboardInterrupt", 2: "pass"})
    pytester.inline_run("-p", "no:cacheprovider", no_reraise_ctrlc=True)
    result = lines(pytester)
    assert result["0_fake_gate"]["status"] == "passed"
    assert result["1_fake_gate"]["status"] == "not_run"
    assert result["1_fake_gate"]["reason"] == "interrupted (Ctrl-C) while this gate ran"
    assert result["2_fake_gate"]["reason"] == "interrupted (Ctrl-C) before this gate ran"


GATE_5_SAVES = '''
import torch
from moola.artifacts import save_checkpoint

def test_gate_5(request, gate_record):
    settings = request.config.pluginmanager.get_plugin("moola-results").settings
    path = save_checkpoint(settings.artifacts_dir / "models/enhanced_augmented_v1.pt", {"w": torch.zeros(1)},
                           {"gate": {"gate": "5_augment_train", "status": "pending", "run_id": settings.run_id}})
    gate_record.artifacts = {"model": str(path)}
    gate_record.extra = {REQUIRES}
'''


@pytest.mark.parametrize(("gate4", "requires", "deliverable"), [
    ("pass", '"requires": {"4_finetune_enhanced": {"holds": True, "failures": []}}', True),
    ("pass", '', False),  # gate 5's line does not say gate 4's rule held: never delivered
    ("pass", '"requires": {"4_finetune_enhanced": {"holds": False, "failures": ["no gain"]}}', False),
    # gate 4 crashed in this session (every gate run, -p no:dependency): its rule's record is overruled
    ("raise RuntimeError('crash')", '"requires": {"4_finetune_enhanced": {"holds": True, "failures": []}}', False),
])
def test_the_plugin_marks_the_augmented_model_deliverable_only_beside_gate_4s_rule(pytester, gate4, requires,
                                                                                  deliverable):
    from moola.artifacts import load_checkpoint

    pytester.makeconftest(ROOT_CONFTEST.read_text())
    pytester.makepyfile(test_4_finetune_enhanced=f"def test_gate_4():\n    {gate4}\n",
                        test_5_augment_train=GATE_5_SAVES.replace("{REQUIRES}", "{" + requires + "}"))
    pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:dependency")
    gate = load_checkpoint(pytester.path / "artifacts/models/enhanced_augmented_v1.pt")[1]["gate"]
    assert gate["status"] == "passed" and gate["deliverable"] is deliverable, gate
