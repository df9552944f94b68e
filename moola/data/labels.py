"""Labels checked as labels: which rows are one window, which disagree, how many windows stand behind
the verdicts, whether the spans are usable, and whether row order can be trusted as time order.

The user's file holds several rows per window (`{base}_exp_{n}`): one per labeled span. Two rows
of one window on the *same* span with different labels are a conflict no model can learn; rows
on different spans are different questions about the same bars. The verdicts rest on the
distinct windows (`n_windows`), not the rows: two rows of one window are one draw of the market.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from moola.data.errors import Problem
from moola.data.overlap import identical_groups, shared_bars
from moola.data.parquet import WindowTable, _rows
from moola.data.validate import data_root_of

ID_PATTERN = re.compile(r"^(\d+)_exp_(\d+)$")  # the user's `{base}_exp_{n}`: base orders windows in time


@dataclass(frozen=True)
class LabelAudit:
    """What the labeled rows are, as labels of windows (gate 0 reports it; every line carries `n_windows`)."""

    n_rows: int
    window_of: np.ndarray  # (N,) int64: rows with the same (normalised) bars share an id
    conflicts: tuple  # groups of window_ids: one window, one span (or no spans), different labels
    duplicates: int  # rows repeating an earlier row's window, span and label
    multi_span_windows: int  # windows labeled on more than one span
    mixed_label_windows: int  # windows whose spans carry different classes
    order: str  # how row order was checked against time, in words
    order_contradictions: tuple  # (row_a, row_b, offset): row_a precedes row_b, their bars say otherwise

    @property
    def n_windows(self) -> int:
        """Distinct windows behind the rows: the effective number of independent draws."""
        return len(np.unique(self.window_of))

    def summary(self) -> dict:
        return {"n_rows": self.n_rows, "n_windows": self.n_windows, "conflicts": [list(c) for c in self.conflicts],
                "duplicates": self.duplicates, "multi_span_windows": self.multi_span_windows,
                "mixed_label_windows": self.mixed_label_windows, "row_order": self.order,
                "order_contradictions": [list(map(int, c)) for c in self.order_contradictions]}


def check_spans(table: WindowTable, prediction_bars: tuple = (), visible_bars: int = 0,
                span_bars: int = 0) -> list[Problem]:
    """`expansion_start <= expansion_end`, both inside the window and, when declared, inside
    `prediction_bars` (inclusive `(first, last)`, e.g. the user's 30–74); and `visible_bars`
    (`data.visible_bars`, 0 = all) within the window, with every span inside the bars it keeps."""
    n_bars = table.features.shape[1]
    problems = []
    if visible_bars > n_bars:
        problems.append(Problem(f"--set data.visible_bars={visible_bars}", f"at most the window's {n_bars} bars",
                                f"{visible_bars}", f"set it to {n_bars} or fewer (0 reads the whole window)"))
    if table.expansion is None:
        if span_bars:
            problems.append(Problem(f"{table.path} columns 'expansion_start', 'expansion_end'", "each row's labeled "
                                    f"span (data.span_bars={span_bars} reads the bars ending at it)", "no such columns",
                                    "add the spans, or drop --set data.span_bars"))
        return problems
    start, end = table.expansion[:, 0], table.expansion[:, 1]
    where = f"{table.path} columns 'expansion_start', 'expansion_end'"
    checks = [("expansion_start <= expansion_end", start > end, "swap the two columns where they are reversed"),
              (f"spans inside the window's bars 0..{n_bars - 1}", (start < 0) | (end > n_bars - 1),
               "spans count bars from 0 at the window's first bar")]
    if prediction_bars:
        first, last = prediction_bars
        checks.append(((f"spans inside the prediction bars {first}..{last} (the data declare them: "
                        "data.prediction_bars)"), (start < first) | (end > last),
                       "correct those spans, or declare other bars with --set data.prediction_bars=FIRST,LAST"))
    if 0 < visible_bars <= n_bars:
        checks.append(((f"spans ending before the decision point (data.visible_bars={visible_bars}: the models "
                        f"read bars 0..{visible_bars - 1})"), end > visible_bars - 1,
                       f"raise data.visible_bars to at least {int(end.max()) + 1}, or drop those rows"))
    if span_bars:
        checks.append(((f"spans that fit the span-aligned view (data.span_bars={span_bars}: the {span_bars} bars "
                        f"ending at the span's last bar, so a span ends at bar {span_bars - 1} or later and is at "
                        f"most {span_bars} bars long)"), (end < span_bars - 1) | (end - start + 1 > span_bars),
                       f"lower data.span_bars to at most {int(end.min()) + 1}, or drop those rows"))
    for expected, bad, fix in checks:
        if bad.any():
            ids = table.window_ids[bad][:3].tolist()
            problems.append(Problem(where, expected, f"{_rows(bad)}, e.g. {ids}", fix))
    return problems


def audit_labels(table: WindowTable, windows: np.ndarray) -> LabelAudit:
    """Group rows by window (`windows`: normalised `(N, T, C)`, so a scaled copy is the same window)
    and find conflicts, duplicates, multi-span windows, and how far row order is checked as time order."""
    groups = identical_groups(windows)
    spans = table.expansion if table.expansion is not None else np.zeros((len(table), 2), np.int64)
    conflicts, duplicates, multi, mixed = [], 0, 0, 0
    for group in np.unique(groups):
        rows = np.flatnonzero(groups == group)
        labels = table.labels[rows].astype(str)
        multi += len({tuple(s) for s in spans[rows]}) > 1
        mixed += len(set(labels)) > 1
        seen = {}
        for row in rows:
            seen.setdefault(tuple(spans[row]), []).append(row)
        for same_span in seen.values():
            classes = set(table.labels[same_span].astype(str))
            if len(classes) > 1:
                conflicts.append(tuple(str(table.window_ids[r]) for r in same_span))
            duplicates += len(same_span) - len(classes)
    order, contradictions = check_row_order(table)
    return LabelAudit(len(table), groups.astype(np.int64), tuple(conflicts), duplicates, multi, mixed, order,
                      tuple(contradictions))


def check_row_order(table: WindowTable) -> tuple[str, list]:
    """Without timestamps, row order is the time order the protocol assumes; check it where the
    data reveal time: rows sharing bars at an offset (`overlap.shared_bars`: the later window
    starts `offset` bars after the earlier), and `{base}_exp_{n}` ids (base orders windows).

    Returns (what was checked, in words; contradicting `(row_a, row_b, offset)` triples,
    row_a < row_b; offset 0 marks ids whose base goes backwards)."""
    if table.timestamps is not None:
        return "by timestamp (the labeled file has a timestamp column)", []
    pairs = shared_bars(table.features, table.features)
    pairs = pairs[(pairs[:, 0] < pairs[:, 1]) & (pairs[:, 2] != 0)]  # each pair once, copies left out
    # windows[i][t + s] == windows[j][t]: j starts s bars after i, so row i < row j needs s > 0
    contradictions = [tuple(map(int, p)) for p in pairs[pairs[:, 2] < 0]]
    checked = [f"{len(pairs)} pair(s) of rows sharing bars at an offset"] if len(pairs) else []
    bases = [ID_PATTERN.match(str(i)) for i in table.window_ids]
    if all(bases):
        base = np.array([int(m.group(1)) for m in bases])
        back = np.flatnonzero(np.diff(base) < 0)
        contradictions += [(int(r), int(r + 1), 0) for r in back]
        checked.append("the {base}_exp_{n} ids' window bases")
    if not checked:
        return ("not checked: no timestamp column, no rows sharing bars at an offset, no {base}_exp_{n} ids; "
                "row order is taken as time order"), contradictions
    agree = "agree with row order" if not contradictions else f"contradict row order {len(contradictions)} time(s)"
    return f"row order as time order checked against {' and '.join(checked)}: they {agree}", contradictions


def order_problem(table: WindowTable, audit: LabelAudit) -> Problem | None:
    """Row order contradicted by the data: the protocol's time order is wrong (no timestamps to go by)."""
    if not audit.order_contradictions:
        return None
    a, b, offset = audit.order_contradictions[0]
    ids = table.window_ids
    evidence = (f"row {b} ({ids[b]}) shares bars with row {a} ({ids[a]}) and starts {-offset} bars before it"
                if offset else f"row {b} ({ids[b]})'s window base precedes row {a} ({ids[a]})'s")
    return Problem(f"{table.path} row order", "rows in time order (there is no timestamp column, so the folds, "
                   "the embargo and the split follow row order)",
                   f"{len(audit.order_contradictions)} contradiction(s), e.g. {evidence}",
                   "sort the rows by time (e.g. by the window's start in the history) and rewrite the split "
                   f"with python -m moola make-split {data_root_of(table)}")


def conflict_warning(table: WindowTable, audit: LabelAudit) -> str | None:
    """Rows that are one input with two answers: named by window_id, with what to do."""
    if not audit.conflicts:
        return None
    shown = "; ".join(" / ".join(c) for c in audit.conflicts[:5])
    same = "the same bars and span" if table.expansion is not None else "the same bars (the file has no spans)"
    return (f"{table.path}: {len(audit.conflicts)} window(s) labeled with different classes on {same} "
            f"({shown}{' …' if len(audit.conflicts) > 5 else ''}): no model can learn both, and each "
            "such pair costs one of them. Fix: review those rows in the labeling tool and keep one label")
