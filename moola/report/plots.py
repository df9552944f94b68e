"""Figures for `moola report --html`: plain numbers in, a PNG `data:` URI out.

matplotlib's object API on the Agg canvas, never pyplot: nothing registers a figure globally, so
drawing works headless (a Mac or Linux box without a display) and from any thread, and a figure is
freed as soon as its URI is returned.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from moola.report.text import verdict

DPI = 100  # a 9-inch figure is 900 px wide: sharp in a browser, ~30-60 kB of PNG
STATUS_COLOURS = {"passed": "#1a7f37", "warning": "#b58100", "failed": "#cf222e",
                  "error": "#cf222e", "skipped": "#6e7781", "not_run": "#6e7781"}
VERDICT_COLOURS = {"better": "#1a7f37", "worse": "#cf222e", "within noise": "#57606a"}


@dataclass(frozen=True)
class ForestRow:
    """One comparison: a point, its 95% CI (None: point only), per-fold and per-seed deltas."""

    label: str
    delta: float
    ci95: tuple[float, float] | None = None
    per_fold: list = field(default_factory=list)
    per_seed: list = field(default_factory=list)
    threshold: float | None = None  # the rule's pass mark on the delta's axis, when it is not 0


def new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas (inches)."""
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def png_uri(figure: Figure) -> str:
    """The figure as a base64 PNG `data:` URI; the figure is cleared either way."""
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png")
    finally:
        figure.clear()  # drop the artists now rather than at the next garbage collection
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def plain(text) -> str:
    """Text from the results file shown literally: a `$` would start matplotlib's mathtext."""
    return str(text).replace("$", r"\$")


def is_number(value) -> bool:
    """A finite int or float from the file (not a bool, not None)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def finite(xs, ys) -> tuple[list, list]:
    """The (x, y) pairs where both are numbers (the file writes None for missing or non-finite)."""
    pairs = [(x, y) for x, y in zip(xs, ys) if is_number(x) and is_number(y)]
    return [x for x, _ in pairs], [y for _, y in pairs]


def forest(rows: list[ForestRow]) -> str:
    """Every comparison on one axis: delta, 95% CI whiskers, folds and seeds, 0 and thresholds."""
    figure = new_figure(9, 1.4 + 0.6 * len(rows))
    ax = figure.add_subplot()
    for y, row in zip(range(len(rows) - 1, -1, -1), rows):  # first row at the top
        colour = VERDICT_COLOURS[verdict(row.ci95)] if row.ci95 else "#57606a"
        if row.ci95:
            ax.hlines(y, *row.ci95, color=colour, linewidth=2)
        ax.plot(row.delta, y, "D", color=colour, markersize=7)
        if row.per_fold:
            ax.scatter(row.per_fold, [y + 0.2] * len(row.per_fold), s=14, color="#0969da",
                       alpha=0.7)
        if len(row.per_seed) > 1:
            ax.scatter(row.per_seed, [y - 0.2] * len(row.per_seed), s=22, marker="x",
                       color="#8250df")
        if row.threshold is not None:
            ax.vlines(row.threshold, y - 0.38, y + 0.38, color="#cf222e", linestyles="dashed")
    ax.axvline(0, color="black", linewidth=1)
    # the gate above, what it compares below
    labels = [plain(row.label).replace(" — ", "\n", 1) for row in rows]
    ax.set_yticks(range(len(rows) - 1, -1, -1), labels, fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("candidate − baseline (F1; balanced accuracy where named)")
    ax.grid(axis="x", alpha=0.3)
    legend = [Line2D([], [], marker="D", linestyle="-", color="#57606a", label="delta, 95% CI")]
    if any(row.per_fold for row in rows):
        legend.append(Line2D([], [], marker="o", linestyle="", color="#0969da", label="per fold"))
    if any(len(row.per_seed) > 1 for row in rows):
        legend.append(Line2D([], [], marker="x", linestyle="", color="#8250df", label="per seed"))
    if any(row.threshold is not None for row in rows):
        legend.append(Line2D([], [], linestyle="--", color="#cf222e", label="rule threshold"))
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return png_uri(figure)


def pretraining(epochs: list, train_loss: list, val_loss: list, lr: list, best_epoch) -> str:
    """Gate 3's losses per epoch, the best epoch marked; the learning rate on a small axis below."""
    figure = new_figure(8, 4.2)
    loss_ax, lr_ax = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    loss_ax.plot(*finite(epochs, train_loss), "o-", markersize=3, label="train loss")
    loss_ax.plot(*finite(epochs, val_loss), "s-", markersize=3, label="val loss")
    if isinstance(best_epoch, (int, float)):
        loss_ax.axvline(best_epoch, color="#1a7f37", linestyle=":",
                        label=f"best epoch {best_epoch}")
    loss_ax.set_ylabel("masked reconstruction loss")
    loss_ax.legend(fontsize=8)
    draw_lr(lr_ax, {"lr": lr}, epochs)
    lr_ax.set_xlabel("epoch")
    return png_uri(figure)


def draw_lr(ax, series: dict, xs: list) -> None:
    """One line per parameter group; log scale when every drawn value is positive."""
    drawn = []
    for name, values in series.items():
        x, y = finite(xs, values)
        if y:
            ax.plot(x, y, linewidth=1.2, label=plain(name))
            drawn += y
    if drawn and min(drawn) > 0:
        ax.set_yscale("log")
    ax.tick_params(axis="y", which="both", labelsize=7)  # under a decade, minor ticks are labelled
    ax.set_ylabel("learning rate", fontsize=8)
    if len(series) > 1:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)


def finetune(title: str, phases: list, loss: list, train_acc: list, lrs: dict) -> str:
    """Loss and train accuracy by global epoch, phases shaded; per-group learning rates below."""
    figure = new_figure(8, 4.6 if lrs else 3.2)
    axes = (figure.subplots(2, 1, sharex=True, height_ratios=[3, 1.4]) if lrs
            else [figure.add_subplot()])
    epochs = list(range(1, len(phases) + 1))
    ax = axes[0]
    start, shade = 0, 0
    for index in range(1, len(phases) + 1):  # one shaded span per run of epochs in one phase
        if index == len(phases) or phases[index] != phases[start]:
            ax.axvspan(start + 0.5, index + 0.5, color=("#f6f8fa", "#d0d7de")[shade % 2])
            ax.text((start + index + 1) / 2, 1.01, plain(phases[start]), ha="center", va="bottom",
                    transform=ax.get_xaxis_transform(), fontsize=7)
            start, shade = index, shade + 1
    ax.plot(*finite(epochs, loss), color="C0", linewidth=1.4, label="loss")
    ax.set_ylabel("train loss", color="C0")
    acc_ax = ax.twinx()
    acc_ax.plot(*finite(epochs, train_acc), color="C1", linewidth=1.4)
    acc_ax.set_ylim(0, 1.05)
    acc_ax.set_ylabel("train accuracy", color="C1")
    ax.set_title(plain(title), fontsize=10, pad=14)
    if lrs:
        draw_lr(axes[1], lrs, epochs)
    axes[-1].set_xlabel("epoch (all phases in order)")
    return png_uri(figure)


def confusion_grid(panels: list[tuple[str, list, list]]) -> str:
    """Small multiples of (title, class names, counts[true][predicted]); colour is the row share."""
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    size = 2.4 + 0.35 * max(len(classes) for _, classes, _ in panels)
    figure = new_figure(size * columns, size * rows)
    for index, (title, classes, counts) in enumerate(panels):
        ax = figure.add_subplot(rows, columns, index + 1)
        shares = [[n / max(1, sum(row)) for n in row] for row in counts]
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for i, row in enumerate(counts):
            for j, n in enumerate(row):
                ax.text(j, i, str(n), ha="center", va="center", fontsize=9,
                        color="white" if shares[i][j] > 0.6 else "black")
        names = [plain(name) for name in classes]
        ax.set_xticks(range(len(classes)), names, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(classes)), names, fontsize=8)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        ax.set_title(plain(title), fontsize=9)
    return png_uri(figure)


def reliability_grid(panels: list[tuple[str, dict, dict]]) -> str:
    """Per model (title, before, after), each {"confidence", "accuracy", "count"} per bin: the two
    curves against the diagonal, each bin's rows as a light bar at its mean confidence."""
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = new_figure(3.4 * columns, 3.3 * rows)
    for index, (title, before, after) in enumerate(panels):
        ax = figure.add_subplot(rows, columns, index + 1)
        ax.plot([0, 1], [0, 1], color="black", linewidth=0.8, linestyle=":")
        counts = [n for bins in (before, after) for n in bins.get("count") or [] if is_number(n)]
        tallest = max(counts, default=0) or 1
        for name, bins, colour, marker, offset in (("before", before, "#cf222e", "o", -0.011),
                                                   ("after", after, "#0969da", "s", 0.011)):
            bars_x, bars_n = finite(bins.get("confidence") or [], bins.get("count") or [])
            ax.bar([x + offset for x in bars_x], [0.25 * n / tallest for n in bars_n], width=0.02,
                   color=colour, alpha=0.25)
            curve = finite(bins.get("confidence") or [], bins.get("accuracy") or [])
            ax.plot(*curve, marker=marker, color=colour, markersize=4, label=name)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("mean confidence in bin", fontsize=8)
        ax.set_ylabel("accuracy in bin", fontsize=8)
        ax.set_title(plain(title), fontsize=9)
        if index == 0:
            ax.legend(fontsize=7, loc="upper left", title="bars: rows per bin", title_fontsize=7)
    return png_uri(figure)


def ecdf_grid(panels: list[tuple[str, str, dict]]) -> str:
    """Per statistic (name, title, {"quantiles", "real", "synthetic", "n_real", "n_synthetic"}):
    the real and synthetic empirical CDFs, quantile level against value."""
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = new_figure(3.6 * columns, 3.2 * rows)
    for index, (name, title, stats) in enumerate(panels):
        ax = figure.add_subplot(rows, columns, index + 1)
        levels = stats.get("quantiles") or []
        for side, colour in (("real", "#0969da"), ("synthetic", "#cf222e")):
            values, quantiles = finite(stats.get(side) or [], levels)
            ax.plot(values, quantiles, drawstyle="steps-post", color=colour,
                    label=f"{side} (n={stats.get(f'n_{side}', '?')})")
        ax.set_ylim(0, 1)
        ax.set_xlabel(plain(name), fontsize=8)
        ax.set_ylabel("quantile level", fontsize=8)
        ax.set_title(plain(title), fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    return png_uri(figure)


def timings(labels: list, durations: list, statuses: list) -> str:
    """One horizontal bar per gate: its wall-clock seconds, coloured by status."""
    figure = new_figure(8, 1.0 + 0.35 * len(labels))
    ax = figure.add_subplot()
    positions = range(len(labels) - 1, -1, -1)  # first gate at the top
    ax.barh(positions, durations, color=[STATUS_COLOURS.get(s, "#6e7781") for s in statuses])
    for y, seconds in zip(positions, durations):
        ax.text(seconds, y, f" {seconds:.1f} s", va="center", fontsize=8)
    ax.set_yticks(positions, [plain(label) for label in labels], fontsize=8)
    ax.set_xlabel("duration (s)")
    ax.margins(x=0.15)
    return png_uri(figure)
