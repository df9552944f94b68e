"""Folds over the labeled rows in time order: blocked K-fold or walk-forward, purged and embargoed.

A row is *scored* in exactly one fold (its block). The rows that train that fold are the other
blocks (blocked) or the earlier ones (walk-forward), minus *purged* rows:

- the embargo: the `embargo` rows on each side of the block in time order (windows cut from one
  history next to each other share bars and regime: neighbours leak);
- windows overlapping a scored window in time, when timestamps and the window span are known,
  and windows sharing a run of bars with a scored one (found from the prices, `moola.data.overlap`);
- windows identical to a scored window after per-window normalisation (the user's
  `102_exp_1`/`102_exp_2` rows can hold the same prices; a scaled copy is the same model input).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moola.data.overlap import identical_groups  # noqa: F401 -- re-exported: the folds' purge uses it

PROTOCOLS = ("holdout", "blocked", "walk-forward")
REFIT = -1  # the fold index of a fit on every labeled row (the saved models)


@dataclass(frozen=True)
class Fold:
    """One fit: the rows it trains on and the block of rows it scores (labeled-file positions)."""

    index: int
    train: np.ndarray  # (n_train,) rows that train this fold
    scored: np.ndarray  # (n_block,) rows this fold scores, each scored by no other fold
    purged: np.ndarray  # (n_purged,) rows kept out of train: embargo, time overlap, identical windows


def time_order(n_rows: int, timestamps: np.ndarray | None = None) -> np.ndarray:
    """Row positions sorted by time (a stable sort by `timestamp`), else in file order."""
    if timestamps is None:
        return np.arange(n_rows)
    return np.argsort(np.asarray(timestamps), kind="stable")


def make_folds(n_rows: int, protocol: str, k: int, *, embargo: int = 1, timestamps: np.ndarray | None = None,
               span=None, groups: np.ndarray | None = None, linked: np.ndarray | None = None) -> list[Fold]:
    """The folds of `protocol` over `n_rows` labeled rows.

    `blocked`: the rows in time order cut into `k` contiguous blocks; fold i scores block i and
    trains on every other block. `walk-forward`: fold i scores block i (i >= 1) and trains only
    on blocks before it: `k - 1` folds, block 0 is never scored. `embargo`: rows purged on each
    side of the scored block (walk-forward: before it). `timestamps` + `span` (same units, e.g.
    the window's duration): windows starting within `span` of a scored window's start overlap it
    and are purged. `groups` (`identical_groups`): a row sharing a group with a scored row is
    purged. `linked` (`(n, n)` bool, e.g. `overlap.sharing_matrix`): a row linked to a scored row
    is purged. `holdout` is the split file's business, not this function's.
    """
    if protocol not in ("blocked", "walk-forward"):
        raise ValueError(f"protocol: expected blocked or walk-forward, found {protocol!r}")
    if k < 2 or k > n_rows:
        raise ValueError(f"folds: expected 2 <= K <= {n_rows} (the labeled rows), found {k}")
    if embargo < 0:
        raise ValueError(f"embargo: expected a number of rows >= 0, found {embargo}")
    order = time_order(n_rows, timestamps)
    rank = np.empty(n_rows, dtype=np.int64)
    rank[order] = np.arange(n_rows)  # position of each row in time order
    blocks = np.array_split(np.arange(n_rows), k)  # in rank units
    folds = []
    for i, block in enumerate(blocks):
        if protocol == "walk-forward" and i == 0:
            continue
        first, last = int(block[0]), int(block[-1])
        if protocol == "blocked":
            candidate = (rank < first) | (rank > last)
            embargoed = ((rank >= first - embargo) & (rank < first)) | ((rank > last) & (rank <= last + embargo))
        else:
            candidate = rank < first
            embargoed = (rank >= first - embargo) & (rank < first)
        scored = order[first: last + 1]  # in time order (the bootstrap's runs follow it)
        purge = embargoed.copy()
        if timestamps is not None:
            starts = np.asarray(timestamps)
            purge |= np.isin(starts, starts[scored])  # same start time as a scored window: a block edge split them
            if span is not None:
                for row in scored:
                    purge |= np.abs(starts - starts[row]) < span
        if groups is not None:
            purge |= np.isin(groups, groups[scored])
        if linked is not None:
            purge |= linked[:, scored].any(axis=1)
        purged = np.flatnonzero(candidate & purge)
        train = np.flatnonzero(candidate & ~purge)
        folds.append(Fold(len(folds), train, scored, purged))
    return folds
