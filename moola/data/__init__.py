"""Data in: the parquet/JSON contract, validation, normalisation, and the demo dataset."""
