"""Gate 0: environment and data contract. Everything downstream assumes these hold."""

import pytest

from moola.stages.env import verify_environment


@pytest.mark.dependency(name="gate0", scope="session")
def test_environment_and_data_contract_hold(settings, data_check, gate_record):
    report = verify_environment(settings, data_check)
    problems = report["problems"]
    gate_record.metrics = {"n_problems": len(problems), **report["device"]}
    gate_record.extra = {"problems": problems, "data_warnings": report["warnings"], "data_notes": report["notes"],
                         "labels": report["labels"], "data_root": report["data_root"],
                         "cuda_available": report["cuda_available"]}
    if problems:
        # The list is the message: no traceback (it would repeat the settings and the dataset).
        pytest.fail(f"{len(problems)} problem(s):\n" + "\n".join(f"- {p}" for p in problems), pytrace=False)
    if report["warnings"]:
        gate_record.warn("; ".join(report["warnings"]))
