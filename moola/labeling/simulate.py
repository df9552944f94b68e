"""Does label-next's choice help? A simulation with an oracle: the demo, whose generator knows where
every pattern is (`demo.generate`'s truth).

The oracle answers a proposed pool window with the class of the pattern whose bars 30–74 line up
with the window's (within `TOLERANCE` bars), and "neither" for every other window: most pool
windows hold no aligned pattern, so most answers are "neither" (reported as a share), and each
proposal costs one label of the user's time whatever the answer. Rounds of proposals reach the
budgets (+20, +50, +100 labels), none asking a window twice (as `add-labels` remembers the windows
answered neither); after each, the recommended model of the demo (MiniRocket, as the
gates train it) is refitted on the labeled rows and measured two ways:

- macro F1 on a test set the oracle labels: the aligned windows and labeled rows of another seed's
  demo (thousands of windows, none from the training history);
- the half-width of its pooled out-of-fold macro F1 CI under the gates' blocked protocol (5 folds,
  the block bootstrap): the width every CI of the run has at that count, the quantity `moola report`'s
  "how many" forecast scales as 1/√n; the forecast from the start's own half-width is printed beside it.

Strategies are compared on the same seeds (paired): the mean difference and its 95% CI over seeds.
`python -m moola.bench --labels` runs it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from moola.data import demo
from moola.data.normalize import normalize_windows
from moola.data.parquet import WindowTable
from moola.data.split import Split
from moola.evaluation.crossfit import block_resample, default_run_length
from moola.evaluation.folds import make_folds
from moola.labeling.folder import Folder
from moola.labeling.propose import STRATEGIES, propose
from moola.models.minirocket import MiniRocketClassifier, score_proba
from moola.training.metrics import macro_f1, macro_f1_rows

BUDGETS = (20, 50, 100)
TOLERANCE = 10  # bars a pattern may sit off the window's prediction bars and still be labeled
CLASSES = ("consolidation", "retracement")
NEITHER = -1


@dataclass
class Scorer:
    """MiniRocket fitted on the labeled rows, as `propose` asks of a model."""

    model: MiniRocketClassifier
    classes: tuple = CLASSES

    def predict_proba(self, windows: np.ndarray, device: str = "cpu") -> np.ndarray:
        return score_proba(self.model.decision_function(normalize_windows(windows, shared_channels=True)))


def oracle_labels(truth: dict) -> np.ndarray:
    """`(n_pool,)` the class of the pattern aligned with each pool window, or NEITHER."""
    starts, labels = truth["event_starts"], truth["event_labels"]
    answer = np.full(len(truth["pool_starts"]), NEITHER)
    order = np.argsort(starts)
    starts, labels = starts[order], labels[order]
    at = np.searchsorted(starts, truth["pool_starts"])
    for side in (at - 1, at):
        ok = (side >= 0) & (side < len(starts))
        near = np.zeros(len(answer), bool)
        near[ok] = np.abs(starts[side[ok]] - truth["pool_starts"][ok]) <= TOLERANCE
        answer[near & (answer == NEITHER)] = labels[side[near & (answer == NEITHER)]]
    return answer


def test_set(seed: int, n_unlabeled: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows and classes the oracle knows, from another history: a demo of seed `seed`."""
    tables = demo.generate(seed, n_unlabeled)
    answer = oracle_labels(tables["truth"])
    aligned = answer != NEITHER
    labeled_y = np.array([CLASSES.index(label) for label in tables["labeled"]["label"]])
    return (np.concatenate([tables["labeled"]["features"], tables["unlabeled"]["features"][aligned]]).astype(np.float32),
            np.concatenate([labeled_y, answer[aligned]]))


def fit(windows: np.ndarray, y: np.ndarray, seed: int) -> MiniRocketClassifier:
    return MiniRocketClassifier(seed=seed).fit(normalize_windows(windows, shared_channels=True), y)


def oof_half_width(windows: np.ndarray, y: np.ndarray, times: np.ndarray, seed: int, resamples: int = 1000) -> float:
    """Half-width of the pooled out-of-fold macro F1's 95% block-bootstrap CI (blocked, 5 folds)."""
    order = np.argsort(times, kind="stable")
    windows, y = windows[order], y[order]
    folds = make_folds(len(y), "blocked", 5, embargo=1)
    pred = np.zeros(len(y), np.int64)
    for fold in folds:
        model = fit(windows[fold.train], y[fold.train], seed)
        pred[fold.scored] = model.predict(normalize_windows(windows[fold.scored], shared_channels=True))
    index = block_resample(len(y), resamples, default_run_length(len(y)), np.random.default_rng(seed))
    draws = macro_f1_rows(y[index], pred[index], len(CLASSES))
    low, high = np.quantile(draws, [0.025, 0.975])
    return float(high - low) / 2


def folder_of(tables: dict, labeled_rows: dict, asked: list = ()) -> Folder:
    """A `Folder` over the demo's pool with the labeled rows so far (the start's and the oracle's), and the
    windows asked before (answered neither: `add-labels` records them, and label-next leaves them out)."""
    from moola.config import DataConfig

    features = np.concatenate([tables["labeled"]["features"], tables["unlabeled"]["features"][labeled_rows["pool"]]])
    labels = np.concatenate([np.asarray(tables["labeled"]["label"], dtype=object),
                             np.asarray(CLASSES, dtype=object)[labeled_rows["y"]]])
    times = np.concatenate([tables["labeled"]["timestamp"], tables["unlabeled"]["timestamp"][labeled_rows["pool"]]])
    labeled = WindowTable(None, np.arange(len(labels)).astype(str).astype(object), features.astype(np.float32),
                          labels, times)
    pool = WindowTable(None, np.asarray(tables["unlabeled"]["window_id"], dtype=object),
                       tables["unlabeled"]["features"].astype(np.float32), timestamps=tables["unlabeled"]["timestamp"])
    split = Split(None, np.arange(len(labels) - 1), np.array([len(labels) - 1]), np.zeros(0, np.int64))
    neither = frozenset(np.asarray(tables["unlabeled"]["window_id"], dtype=object)[np.asarray(asked, np.int64)])
    return Folder(None, DataConfig(), labeled, pool, split, neither)


def simulate(seeds=(17, 18, 19), budgets=BUDGETS, strategies=STRATEGIES, n_unlabeled: int = demo.N_UNLABELED,
             test_seed: int = 1017, resamples: int = 1000, log=print) -> list[dict]:
    """One row per (seed, strategy, budget), budget 0 (the start) included."""
    test_x, test_y = test_set(test_seed, max(2000, n_unlabeled // 4))
    test_x = normalize_windows(test_x, shared_channels=True)
    rows = []
    for seed in seeds:
        tables = demo.generate(seed, n_unlabeled)
        answer = oracle_labels(tables["truth"])
        start_y = np.array([CLASSES.index(label) for label in tables["labeled"]["label"]])
        for strategy in strategies:
            labeled = {"pool": np.zeros(0, np.int64), "y": np.zeros(0, np.int64)}
            asked, neither, spent = [], 0, 0
            for budget in (0, *budgets):
                started = time.monotonic()
                if budget > spent:
                    folder = folder_of(tables, labeled, asked)
                    y_now = np.concatenate([start_y, labeled["y"]])
                    scorer = Scorer(fit(folder.labeled.features, y_now, seed))
                    chosen = propose(folder, budget - spent, strategy, seed, scorer, "MiniRocket on the rows so far")
                    got = answer[chosen.pool_rows]
                    asked += chosen.pool_rows.tolist()
                    neither += int((got == NEITHER).sum())
                    keep = got != NEITHER
                    labeled = {"pool": np.concatenate([labeled["pool"], chosen.pool_rows[keep]]),
                               "y": np.concatenate([labeled["y"], got[keep]])}
                    spent = budget
                features = np.concatenate([tables["labeled"]["features"], tables["unlabeled"]["features"][labeled["pool"]]])
                y_all = np.concatenate([start_y, labeled["y"]])
                times = np.concatenate([tables["labeled"]["timestamp"],
                                        tables["unlabeled"]["timestamp"][labeled["pool"]]]).astype(np.int64)
                model = fit(features, y_all, seed)
                f1 = macro_f1(test_y, model.predict(test_x), len(CLASSES))
                half = oof_half_width(features.astype(np.float32), y_all, times, seed, resamples)
                row = {"seed": seed, "strategy": strategy, "budget": budget, "rows": len(y_all),
                       "neither": neither, "distinct_asked": len(set(asked)), "test_f1": f1, "ci_half_width": half,
                       "class_counts": np.bincount(y_all, minlength=len(CLASSES)).tolist(),
                       "seconds": round(time.monotonic() - started, 1)}
                rows.append(row)
                log(f"seed {seed} {strategy:>14} +{budget:<3} labels: {row['rows']} rows ({neither} neither), "
                    f"test macro F1 {f1:.3f}, OOF CI half-width {half:.3f} ({row['seconds']:.0f} s)")
    return rows


def summarise(rows: list[dict], baseline: str = "random") -> list[dict]:
    """Per strategy and budget: means over seeds, and the paired difference from `baseline` with a
    95% t interval over seeds."""
    from scipy import stats

    out = []
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        for budget in dict.fromkeys(r["budget"] for r in rows):
            mine = {r["seed"]: r for r in rows if r["strategy"] == strategy and r["budget"] == budget}
            base = {r["seed"]: r for r in rows if r["strategy"] == baseline and r["budget"] == budget}
            seeds = sorted(set(mine) & set(base))
            entry = {"strategy": strategy, "budget": budget, "seeds": len(seeds),
                     "rows": float(np.mean([mine[s]["rows"] for s in seeds])),
                     "neither_share": float(np.mean([mine[s]["neither"] / budget for s in seeds])) if budget else 0.0,
                     "test_f1": float(np.mean([mine[s]["test_f1"] for s in seeds])),
                     "ci_half_width": float(np.mean([mine[s]["ci_half_width"] for s in seeds]))}
            for key in ("test_f1", "ci_half_width"):
                diff = np.array([mine[s][key] - base[s][key] for s in seeds])
                if strategy != baseline and len(diff) > 1 and diff.std(ddof=1) > 0:
                    half = float(stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff)))
                    entry[f"{key}_vs_{baseline}"] = (float(diff.mean()), float(diff.mean() - half), float(diff.mean() + half))
                elif strategy != baseline:
                    entry[f"{key}_vs_{baseline}"] = (float(diff.mean()),) * 3
            out.append(entry)
    return out


def format_table(summary: list[dict], baseline: str = "random") -> str:
    head = (f"| strategy | labels | rows | neither | test macro F1 | vs {baseline} [95% CI over seeds] | "
            f"OOF CI half-width | vs {baseline} |")
    lines = [head, "|" + "---|" * 8]
    def vs(entry: dict, key: str) -> str:
        d = entry.get(f"{key}_vs_{baseline}")
        return "" if d is None else f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]"

    for e in summary:
        lines.append(f"| {e['strategy']} | +{e['budget']} | {e['rows']:.0f} | {100 * e['neither_share']:.0f}% | "
                     f"{e['test_f1']:.3f} | {vs(e, 'test_f1')} | {e['ci_half_width']:.3f} | {vs(e, 'ci_half_width')} |")
    return "\n".join(lines)


def forecast_lines(summary: list[dict]) -> list[str]:
    """The 1/√n forecast (`evaluation.sample_size`) from each strategy's start, beside what it reached."""
    out = []
    for strategy in dict.fromkeys(e["strategy"] for e in summary):
        mine = [e for e in summary if e["strategy"] == strategy]
        start = next(e for e in mine if e["budget"] == 0)
        for e in mine:
            if e["budget"]:
                forecast = start["ci_half_width"] * np.sqrt(start["rows"] / e["rows"])
                out.append(f"{strategy} +{e['budget']}: {e['rows']:.0f} rows, OOF CI half-width {e['ci_half_width']:.3f}; "
                           f"1/√n from the start's {start['ci_half_width']:.3f} at {start['rows']:.0f} rows forecast "
                           f"{forecast:.3f}")
    return out


def plot_summary(summary: list[dict], path) -> None:
    """Test macro F1 and the OOF CI half-width against labels spent, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for strategy in dict.fromkeys(e["strategy"] for e in summary):
        mine = [e for e in summary if e["strategy"] == strategy]
        budgets = [e["budget"] for e in mine]
        for axis, key in zip(axes, ("test_f1", "ci_half_width")):
            axis.plot(budgets, [e[key] for e in mine], marker="o", label=strategy)
    axes[0].set(xlabel="labels spent (proposals answered)", ylabel="test macro F1 (oracle)")
    axes[1].set(xlabel="labels spent (proposals answered)", ylabel="OOF macro F1 CI half-width")
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
