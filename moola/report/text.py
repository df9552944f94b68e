"""Summarise one run of the results file: a table per gate, and whether the run is complete."""

from __future__ import annotations

from pathlib import Path

from moola.results import GATES, choose_run


def latest_run(path: Path, run_id: str | None = None, include_narrowed: bool = False) -> list[dict]:
    """Lines of `run_id`, or of the latest run that ran the gates (`results.choose_run`)."""
    return choose_run(path, run_id, include_narrowed)[0]


def verdict(ci) -> str:
    """Plain words for a paired bootstrap CI of a difference."""
    if ci[0] > 0:
        return "better"
    if ci[1] < 0:
        return "worse"
    return "within noise"


def short_reason(reason: str, limit: int = 160, results=None) -> str:
    """A reason on one line: its first sentence and first listed problem, cut at a word, saying how many
    more there are and where to read them all."""
    parts = [part.strip().lstrip("- ") for part in str(reason).splitlines() if part.strip()]
    head, items = parts[0], parts[1:]
    text = f"{head} {items[0]}" if items else head
    cut = len(text) > limit
    if cut:
        text = text[:limit].rsplit(" ", 1)[0] + " …"
    more = max(0, len(items) - 1)
    if more or cut:
        where = f"python -m moola report {results} --full" if results else "python -m moola report --full"
        text += f" ({f'+{more} more; ' if more else ''}in full: {where})"
    return text


def format_run(lines: list[dict], full: bool = False, results=None) -> str:
    """The run as a table; `full` prints every reason whole (every gate-0 problem) under its gate."""
    policies = {(line.get("comparison") or {}).get("policy") for line in lines} - {None}
    rows = [f"run {lines[0]['run_id']}  profile {lines[0].get('profile')}  device {lines[0].get('device')}"
            + (f"  gate policy {', '.join(sorted(policies))}" if policies else "")
            + (f"  evaluation {(lines[0].get('evaluation') or {}).get('description')}"
               if (lines[0].get("evaluation") or {}).get("description") else "")
            + ("  NEGATIVE CONTROL: train labels shuffled"
               if str((lines[0].get("data") or {}).get("train_labels", "")).startswith("shuffled") else "")
            + "  (delta = candidate − baseline F1 [95% CI])"]
    for line in lines:
        metrics, comparison = line.get("metrics") or {}, line.get("comparison") or {}
        f1 = metrics.get("val_f1")
        delta = comparison.get("delta")
        ci = comparison.get("delta_ci95")
        cells = [f"{line['gate']:<22}", f"{line['status']:<8}",
                 f"val_f1 {f1:.3f}" if isinstance(f1, (int, float)) else " " * 12,
                 f"delta {delta:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] {verdict(ci):<12}" if delta is not None and ci
                 else " " * 43,
                 f"{line.get('duration_s', 0):7.1f}s"]
        library_warnings = len(line.get("warnings") or [])  # shown by pytest, recorded, never fatal
        reason = line.get("reason")
        rows.append("  ".join(cells) + (f"  {short_reason(reason, results=results)}" if reason and not full else "")
                    + (f"  ({library_warnings} library warning(s) in the line)" if library_warnings else ""))
        if reason and full:
            rows.extend(f"    {part}" for part in str(reason).splitlines() if part.strip())
    rows.extend(f"  {text}" for text in data_texts(lines))
    rows.extend(f"  {text}" for text in refit_texts(lines))
    return "\n".join(rows)


def data_texts(lines: list[dict]) -> list[str]:
    """Gate 0's notes: what it counted and reported without refusing (distinct windows, the pool
    windows gate 3 leaves out, the split file's leaks the folds purge, the bars after each span)."""
    return [f"{line['gate']}: {note}" for line in lines for note in line.get("data_notes") or []]


def refit_texts(lines: list[dict]) -> list[str]:
    """One line per saved refit: how it compares with the fold models that scored its recipe
    (`metrics.refit.check`), and gate 5's optimizer steps against gate 4's (`metrics.step_budget`)."""
    texts = []
    for line in lines:
        metrics = line.get("metrics") or {}
        check = (metrics.get("refit") or {}).get("check")
        if check:
            pooled = check["pooled_rows"]
            text = (f"{line['gate']}: saved refit vs its fold models: class agreement {pooled['agreement']:.2f} on "
                    f"{pooled['rows']} labeled rows (refit in-sample), mean |dp| {pooled['mean_abs_prob_diff']:.3f}")
            other = check.get("unlabeled") or {}
            if other.get("skipped"):
                text += f"; not compared on unlabeled windows: {other['skipped']}"
            elif other:
                text += (f"; {other['agreement']:.2f} on {other['rows']} unlabeled windows, mean |dp| "
                         f"{other['mean_abs_prob_diff']:.3f}")
            if check.get("steps"):
                steps = check["steps"]
                text += f"; {steps['refit']} optimizer steps (scored fits {steps['scored_fits_mean']:.0f})"
            texts.append(text)
        budget = metrics.get("step_budget")
        if budget and budget.get("ratio"):
            texts.append(f"{line['gate']}: gate 4's schedule over train + synthetic rows: {budget['gate5_steps']:.0f} "
                         f"optimizer steps per fit vs gate 4's {budget['gate4_steps']:.0f} "
                         f"({budget['ratio']:.2f}x, same {budget['epochs']} epochs)")
    return texts


def completeness_problems(lines: list[dict], expected_gates: int = len(GATES)) -> list[str]:
    """Why a run does not count as complete: missing gate lines or a crashed (`error`) gate."""
    problems = []
    if len(lines) != expected_gates:
        problems.append(f"expected {expected_gates} gate lines, found {len(lines)}")
    for line in lines:
        if line["status"] == "error":
            problems.append(f"{line['gate']} crashed: {line.get('reason')}")
        if line["status"] in ("failed", "skipped", "not_run", "warning") and not line.get("reason"):
            problems.append(f"{line['gate']} {line['status']} without a reason")
    return problems
