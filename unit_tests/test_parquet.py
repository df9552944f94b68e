import time

import numpy as np

from moola.data.parquet import read_windows, write_windows


def test_nested_features_roundtrip_to_float32_array(tmp_path):
    features = np.random.default_rng(0).normal(size=(7, 11, 3))
    write_windows(tmp_path / "w.parquet", {"window_id": [str(i) for i in range(7)], "features": features})
    table, problems = read_windows(tmp_path / "w.parquet", labeled=False)
    assert problems == []
    assert table.features.dtype == np.float32 and table.features.shape == (7, 11, 3)
    np.testing.assert_allclose(table.features, features, rtol=1e-6)


def test_decoding_the_full_unlabeled_pool_is_vectorised(tmp_path):
    features = np.random.default_rng(0).normal(size=(11_873, 105, 4)) + 20_000
    write_windows(tmp_path / "u.parquet", {"window_id": [f"u{i}" for i in range(11_873)], "features": features})
    started = time.perf_counter()
    table, _ = read_windows(tmp_path / "u.parquet", labeled=False)
    # A loop per row takes several seconds here; the vectorised path well under one.
    assert time.perf_counter() - started < 3.0
    assert table.features.shape == (11_873, 105, 4)
