"""moola: a pytest-as-runner gate suite for small-data time-series classifiers."""

__version__ = "0.1.0"
