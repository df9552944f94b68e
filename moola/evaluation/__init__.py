"""Evaluation protocols: folds over the labeled rows, cross-fitting, and the block bootstrap.

Built so a gate's number can stand on every labeled row instead of one 20-row split: each block
of rows (in time order) is scored once, by models that never trained on it or on its neighbours.
"""
