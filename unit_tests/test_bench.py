"""The benchmark runs end to end on tiny inputs (its numbers are reported, never asserted)."""

import numpy as np
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
