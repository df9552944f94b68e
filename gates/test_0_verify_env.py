"""Gate 0: environment and data contract. Everything downstream assumes these hold."""

import pytest

from moola.stages.env import verify_environment


@pytest.mark.dependency(name="gate0", scope="session")
def test_environment_and_data_contract_hold(settings, data_check, gate_record):
    report = verify_environment(settings, data_check)
    gate_record.metrics = {"n_problems": len(report["problems"]), **report["device"]}
    gate_record.extra = {"problems": report["problems"], "data_root": report["data_root"],
                         "data_summary": report["data"], "cuda_available": report["cuda_available"]}
    assert not report["problems"], f"{len(report['problems'])} problem(s):\n" + "\n".join(report["problems"])
