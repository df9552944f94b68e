"""Training: functions that take arrays and configs and return data (results with models in eval mode)."""
