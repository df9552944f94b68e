"""`python -m moola label-next N`: which pool windows to label next.

Candidates are the pool windows that are no labeled row and share no bars with one (`folder.free_pool`);
the N chosen share no bars with each other either. Three strategies, on scikit-activeml's query
strategies where they fit:

- `random` (the default): uniform picks (`skactiveml.pool.RandomSampling`). The simulation
  (docs/labeling.md) found neither strategy below better than it on the demo's oracle, so it stays
  the default.
- `likely-margin`: the `SHORTLIST` x N candidates nearest the labeled rows in a representation
  (every labeled row holds a pattern; most pool windows hold none), then those on which the
  recommended model (`moola select`; MiniRocket's file when select recommends none) is least sure
  first, by the margin between its two most likely classes (`skactiveml.pool.uncertainty_scores`).
- `margin-diverse`: the `SHORTLIST` x N candidates with the smallest margins, spread by a core set
  (`skactiveml.pool.CoreSet`: each pick the candidate farthest from every labeled row and earlier pick).

Where the model cannot score pool windows (it reads labeled spans, which the pool lacks) or no model
file exists, the model-based strategies fall back to the representation alone, and the record says so.
The representation: MiniRocket features (`REPRESENTATION_KERNELS` kernels, fitted on the labeled
windows) of the normalised whole windows, standardised and reduced to `REPRESENTATION_DIMS` by PCA.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moola.data.normalize import normalize_windows
from moola.data.overlap import shared_bars
from moola.labeling.folder import NEITHER_FILE, Folder, free_pool

STRATEGIES = ("random", "likely-margin", "margin-diverse")  # the default first
SHORTLIST = 10  # candidates per label kept by margin before the core set spreads the picks
REPRESENTATION_KERNELS = 840  # MiniRocket's smallest multiple of its 84 kernels that spreads windows well
REPRESENTATION_DIMS = 32
REPRESENTATION_WORDS = (f"MiniRocket features ({REPRESENTATION_KERNELS} kernels, fitted on the labeled windows) of the "
                        "normalised whole windows, standardised, PCA to {dims} dimensions")
MISSING = -1  # skactiveml's marker for an unlabeled row
LIKENESS_NEIGHBOURS = 5  # labeled rows a candidate's likeness to a pattern is measured against
RANDOM_DRAWS = 20  # random candidates drawn per label, of which those sharing bars with an earlier pick are passed over


@dataclass
class Proposal:
    pool_rows: np.ndarray  # (N,) pool indices, in the order chosen
    strategy: str
    record: dict  # the strategy and its inputs, for the proposal file
    proba: np.ndarray | None = None  # (N, K) the model's probabilities, when it scored the pool
    margins: np.ndarray | None = None  # (N,) top-two probability gap
    classes: list = field(default_factory=list)


def scoring_model(artifacts_dir: Path, results: Path) -> tuple:
    """`(deployed or None, why)`: the recommended model, else MiniRocket's file, for margins only."""
    from moola.deploy.model import DeploymentError, load_deployed
    from moola.deploy.predict import recommended_model

    try:
        deployed, _ = recommended_model(artifacts_dir, results)
        why = f"{deployed.kind}, the model moola select recommends ({results})"
    except (DeploymentError, ValueError, OSError) as exc:
        path = artifacts_dir / "models" / "minirocket_v1.pt"
        if not path.is_file():
            return None, f"no model to score the pool with ({str(exc)[:160]})"
        try:
            deployed = load_deployed(path, "minirocket")
        except (DeploymentError, ValueError, OSError) as more:
            return None, f"no model to score the pool with ({str(more)[:160]})"
        why = f"minirocket ({path}): select recommends no model, so gate 2's control ranks the windows"
    if deployed.spec.needs_spans:
        return None, (f"{deployed.kind} reads each row's labeled span, which pool windows do not have: no margin, "
                      "so diversity alone")
    return deployed, why


def representation(folder: Folder, labeled_rows: np.ndarray, pool_rows: np.ndarray, seed: int) -> np.ndarray:
    """`(len(labeled_rows) + len(pool_rows), REPRESENTATION_DIMS)` coordinates, labeled rows first."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler
    from sktime.transformations.panel.rocket import MiniRocketMultivariate

    def panel(features):  # sktime's numpy3D layout: (n, channels, bars)
        return np.ascontiguousarray(normalize_windows(features, shared_channels=folder.shared_channels)
                                    .transpose(0, 2, 1), dtype=np.float64)

    labeled = panel(folder.labeled.features[labeled_rows])
    pool = panel(folder.pool.features[pool_rows])
    rocket = MiniRocketMultivariate(num_kernels=REPRESENTATION_KERNELS, random_state=seed).fit(labeled)
    features = np.asarray(rocket.transform(np.concatenate([labeled, pool])), dtype=np.float64)
    scaled = StandardScaler().fit_transform(features)
    dims = min(REPRESENTATION_DIMS, *scaled.shape)
    return PCA(n_components=dims, random_state=seed).fit_transform(scaled)


def _no_shared_bars(query, folder: Folder, candidates: np.ndarray, n: int) -> np.ndarray:
    """Picks one at a time with `query(remaining) -> position in remaining`, dropping after each pick
    the candidates that share bars with it."""
    remaining = np.ones(len(candidates), bool)
    picked = []
    for _ in range(n):
        if not remaining.any():
            break
        position = int(query(np.flatnonzero(remaining)))
        picked.append(position)
        remaining[position] = False
        pairs = shared_bars(folder.pool.features[candidates[remaining]], folder.pool.features[[candidates[position]]])
        remaining[np.flatnonzero(remaining)[np.unique(pairs[:, 0])]] = False
    return np.asarray(picked, dtype=np.int64)


def _in_order(folder: Folder, candidates: np.ndarray, n: int) -> np.ndarray:
    """The first n positions of `candidates` (in their order) that share no bars with an earlier pick."""
    queue = iter(range(len(candidates)))
    return _no_shared_bars(lambda remaining: next(i for i in queue if i in set(remaining)), folder, candidates, n)


def _likely_margin(folder: Folder, free: np.ndarray, n: int, seed: int, scorer, scorer_note: str, record: dict,
                   started: float) -> Proposal:
    """The SHORTLIST x N candidates most like the labeled rows (every labeled row is a pattern; most pool
    windows hold none), then the model's smallest margins among them first."""
    from skactiveml.pool import uncertainty_scores
    from sklearn.neighbors import NearestNeighbors

    n_labeled = len(folder.labeled)
    embedding = representation(folder, np.arange(n_labeled), free, seed)
    neighbours = NearestNeighbors(n_neighbors=min(LIKENESS_NEIGHBOURS, n_labeled)).fit(embedding[:n_labeled])
    distance = neighbours.kneighbors(embedding[n_labeled:])[0].mean(axis=1)
    keep = min(len(free), SHORTLIST * n)
    shortlist = free[np.argsort(distance, kind="stable")[:keep]]
    record["shortlist"] = (f"the {keep} candidates nearest the labeled rows (mean distance to their "
                           f"{LIKENESS_NEIGHBOURS} nearest labeled rows in the representation)")
    record["representation"] = REPRESENTATION_WORDS.format(dims=embedding.shape[1])
    record["model"] = scorer_note or (None if scorer is None else "the model given")
    proba = margins = None
    if scorer is not None:
        proba = scorer.predict_proba(folder.pool.features[shortlist], "cpu")
        order = np.argsort(-uncertainty_scores(proba, method="margin_sampling"), kind="stable")
        shortlist, proba = shortlist[order], proba[order]
        record["order"] = "the model's margin between its two most likely classes, smallest first (skactiveml)"
    else:
        record["order"] = "likeness alone (no model to score the pool)"
    picked = _in_order(folder, shortlist, n)
    if proba is not None:
        proba = proba[picked]
        top = np.sort(proba, axis=1)
        margins = top[:, -1] - top[:, -2]
    record["seconds"] = round(time.monotonic() - started, 1)
    return Proposal(shortlist[picked], "likely-margin", record, proba, margins,
                    list(scorer.classes) if scorer is not None else [])


def propose(folder: Folder, n: int, strategy: str, seed: int, scorer=None, scorer_note: str = "") -> Proposal:
    """N pool windows to label next by `strategy`, with the record of how they were chosen. `scorer`
    (`scoring_model`: a `Deployed`, or any object with `predict_proba(windows, device)` and `classes`)
    ranks the candidates for `margin-diverse`; None: the core set alone."""
    from skactiveml.pool import CoreSet, RandomSampling, uncertainty_scores

    if strategy not in STRATEGIES:
        raise ValueError(f"--strategy: expected one of {', '.join(STRATEGIES)}, found {strategy!r}")
    if n < 1:
        raise ValueError(f"N: expected a number of windows >= 1, found {n}")
    started = time.monotonic()
    free = np.flatnonzero(free_pool(folder))
    if not len(free):
        asked = f", or was answered neither before ({len(folder.neither)} in {NEITHER_FILE})" if folder.neither else ""
        raise ValueError(f"{folder.pool.path}: every pool window is, or shares bars with, a labeled row{asked}: nothing "
                         "left to propose; cut a pool over more history")
    record = {"strategy": strategy, "n": n, "seed": seed, "data_root": str(folder.root),
              "n_labeled": len(folder.labeled), "n_pool": len(folder.pool), "n_candidates": len(free),
              "candidates": "pool windows that are no labeled row and share no bars with one (nor with each other)",
              "answered_neither_before": len(folder.neither)}
    if strategy == "random":  # a random order of candidates, then the first that share no bars with an earlier pick
        order = RandomSampling(random_state=seed, missing_label=MISSING).query(
            np.zeros((len(free), 1)), np.full(len(free), MISSING), batch_size=min(len(free), RANDOM_DRAWS * n))
        chosen = free[order[_in_order(folder, free[order], n)]]
        record.update(model=None, seconds=round(time.monotonic() - started, 1))
        return Proposal(chosen, strategy, record)
    if strategy == "likely-margin":
        return _likely_margin(folder, free, n, seed, scorer, scorer_note, record, started)
    deployed = scorer
    record["model"] = scorer_note or (None if scorer is None else "the model given")
    proba = margins = None
    shortlist = free
    if deployed is not None:
        proba_all = deployed.predict_proba(folder.pool.features[free], "cpu")
        uncertainty = uncertainty_scores(proba_all, method="margin_sampling")  # higher: a smaller margin
        keep = min(len(free), SHORTLIST * n)
        order = np.argsort(-uncertainty, kind="stable")[:keep]
        shortlist, proba = free[order], proba_all[order]
        record["shortlist"] = (f"the {keep} candidates with the smallest margin between the two most likely classes "
                               "(skactiveml uncertainty_scores, margin_sampling)")
    else:
        shortlist = free
    embedding = representation(folder, np.arange(len(folder.labeled)), shortlist, seed)
    n_labeled = len(folder.labeled)
    coreset = CoreSet(random_state=seed, missing_label=MISSING)
    taken = np.zeros(len(shortlist), bool)

    def query(remaining):
        y = np.concatenate([np.zeros(n_labeled), np.where(taken, 0, MISSING)])  # labeled rows and earlier picks
        position = int(coreset.query(embedding, y, candidates=n_labeled + remaining, batch_size=1)[0]) - n_labeled
        taken[position] = True
        return position

    picked = _no_shared_bars(query, folder, shortlist, n)
    record["representation"] = REPRESENTATION_WORDS.format(dims=embedding.shape[1]) + \
        "; skactiveml CoreSet (greedy k-center) from the labeled rows"
    record["seconds"] = round(time.monotonic() - started, 1)
    if proba is not None:
        proba = proba[picked]
        top = np.sort(proba, axis=1)
        margins = top[:, -1] - top[:, -2]
    return Proposal(shortlist[picked], strategy, record, proba, margins,
                    list(deployed.classes) if deployed is not None else [])


def write_record(proposal: Proposal, folder: Folder, page: Path, artifacts_dir: Path) -> tuple[Path, list]:
    """`ARTIFACTS/labeling/label-next-TIME.json`: the strategy, its inputs and the windows chosen."""
    import json

    chosen = [{"window_id": str(folder.pool.window_ids[row]), "pool_row": int(row),
               **({"margin": round(float(proposal.margins[k]), 4)} if proposal.margins is not None else {})}
              for k, row in enumerate(proposal.pool_rows)]
    path = Path(artifacts_dir) / "labeling" / f"label-next-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**proposal.record, "page": str(page), "windows": chosen}, indent=1) + "\n")
    return path, chosen
