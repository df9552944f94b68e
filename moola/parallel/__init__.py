"""Running a stage's independent fits together: worker processes, each fit on one CPU thread
(`moola.parallel.pool`)."""
