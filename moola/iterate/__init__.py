"""Iterating on the same labeled rows: the configurations tried (`family`), the sweep that runs
a grid of them (`sweep`), and the adjustment that keeps their verdicts honest (`adjust`)."""
