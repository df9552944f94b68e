"""The benchmark runs end to end on tiny inputs (its numbers are reported, never asserted)."""

import numpy as np
import pytest
import torch

from moola.bench import bench_finetune, bench_parquet, bench_precision, bench_pretrain


def test_bench_reports_ratios_on_tiny_inputs():
    rng = np.random.default_rng(0)
    windows = rng.normal(size=(16, 21, 4)).astype(np.float32)
    y = np.array([0, 1] * 8)
    cpu = torch.device("cpu")
    assert bench_finetune(windows, y, cpu, repeats=1)["ratio"] > 0
    assert bench_pretrain(windows, cpu, repeats=1)["ratio"] > 0
    assert bench_parquet(rng.normal(size=(10, 21, 4)), repeats=1)["speedup"] > 0
    precision = bench_precision(windows, cpu, repeats=1)  # CUDA only in main(); off CUDA both are fp32
    assert precision["speedup"] > 0 and precision["precision_recorded"] == "fp32"


@pytest.mark.slow
def test_bench_times_a_gates_fits_before_one_at_a_time_and_together():
    from moola.bench import bench_fits_together, report_fits_together

    rng = np.random.default_rng(0)
    windows = rng.normal(size=(16, 21, 4)).astype(np.float32)
    numbers = bench_fits_together(windows, np.array([0, 1] * 8), torch.device("cpu"), repeats=1, n_fits=2, workers=2)
    assert numbers["workers"] == 2 and numbers["speedup"] > 0 and numbers["bare_step_ms"] > 0
    assert "together in 2 workers" in report_fits_together(numbers)
