import datetime as dt
import json

import numpy as np
import pytest

from moola.results import append_line, build_line, read_lines


def test_line_has_the_schema_fields_and_plain_json():
    line = build_line("4_finetune_enhanced", "passed", run_id="r1", metrics={"val_f1": np.float32(0.75),
                      "counts": np.array([3, 4])}, comparison={"delta": 0.1, "delta_ci95": (0.0, 0.2)},
                      context={"profile": "quick", "device": "cpu", "seed": 17, "data": {"n_train": 78},
                               "versions": {"moola": "0.1.0"}},
                      now=dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc))
    assert line["timestamp"] == "2026-01-01T12:00:00Z"
    assert line["metrics"] == {"val_f1": pytest.approx(0.75), "counts": [3, 4]}
    assert line["comparison"]["delta_ci95"] == [0.0, 0.2]
    for key in ("gate", "run_id", "status", "model", "config", "reason", "duration_s", "artifacts", "profile",
                "device", "seed", "data", "evaluation", "versions"):
        assert key in line
    json.dumps(line, allow_nan=False)


def test_non_finite_metrics_become_null():
    line = build_line("3_pretrain_bilstm", "failed", run_id="r", metrics={"loss": float("nan")})
    assert line["metrics"]["loss"] is None


def test_unknown_status_is_rejected():
    with pytest.raises(ValueError, match="status"):
        build_line("0_verify_env", "ok", run_id="r")


def test_lines_append_whole(tmp_path):
    path = tmp_path / "out" / "results.jsonl"
    for status in ("passed", "failed"):
        append_line(path, build_line("1_smoke_enhanced", status, run_id="r"))
    assert [line["status"] for line in read_lines(path)] == ["passed", "failed"]
