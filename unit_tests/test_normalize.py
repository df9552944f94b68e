import numpy as np
import pytest

from moola.data.normalize import normalize_windows
from unit_tests.conftest import ohlc_windows


@pytest.mark.parametrize("factor", [1e-3, 0.5, 3.0, 1e4])
@pytest.mark.parametrize("shared", [True, False])
def test_multiplying_prices_by_a_constant_leaves_model_input_unchanged(factor, shared):
    windows = ohlc_windows(np.random.default_rng(1), 5, 30)
    np.testing.assert_allclose(normalize_windows(windows * factor, shared), normalize_windows(windows, shared),
                               atol=1e-5)


def test_output_is_standardised_per_window_and_keeps_ohlc_order():
    windows = ohlc_windows(np.random.default_rng(2), 4, 30)
    z = normalize_windows(windows)
    np.testing.assert_allclose(z.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(1, 2)), 1, atol=1e-4)
    assert (z[..., 1] >= np.maximum(z[..., 0], z[..., 3]) - 1e-6).all()
    assert np.abs(z).max() < 10  # raw prices near 20,000 never reach the model


def test_constant_window_maps_to_zeros():
    assert not normalize_windows(np.full((1, 10, 4), 20_000.0)).any()


def test_two_dimensional_input_is_rejected_with_the_fix():
    with pytest.raises(ValueError, match=r"x\[\.\.\., None\]"):
        normalize_windows(np.zeros((3, 10)))
