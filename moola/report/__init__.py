"""Reading a run back: the terminal table (`text`), the HTML page (`page`, `plots`) and two runs
side by side (`compare`). Everything here reads results lines; nothing trains."""

from moola.report.text import completeness_problems, format_run, latest_run, short_reason, verdict

__all__ = ["completeness_problems", "format_run", "latest_run", "short_reason", "verdict"]
