"""The configurations tried on the same labeled rows: which runs they are, how many, and which one a run is.

Every run of the gates is one more look at the labeled rows. A *configuration* is what makes a
run's models what they are: the profile, every setting (`--set`, `--gate-policy`, `--cv` …), the
base seed, the device kind — the recipe less the code version and the data. Two runs of one
configuration are one look: a deterministic rerun gives the same numbers, and a `--start-gate`
run of it scores the same models' other gates. Runs are on the same rows when their labeled
windows, labels and spans are the same (`data.labeled_rows`): a re-cut pool or a new split file
does not make new rows, so it does not reset the count.

Not counted: negative controls (`--shuffle-labels`: they look at shuffled labels and deliver
nothing) and runs that scored no model (gate 0 stopped them: they looked at nothing).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from moola.results import run_ids, shuffled

# the recipe entries that make a configuration (`moola.recipe.make_recipe`); not code, data or hash
CONFIGURATION = ("profile", "settings", "seed", "device", "train_labels")


@dataclass
class Configuration:
    """One configuration's runs on the rows, and its lines merged: per gate, the latest line that
    scored it (a `-x` run and a later `--start-gate 3` run of the same configuration make one run)."""

    key: str
    recipe: dict
    runs: list = field(default_factory=list)  # run ids, oldest first
    lines: list = field(default_factory=list)
    sweeps: list = field(default_factory=list)  # sweep ids that ran it

    @property
    def label(self) -> str:
        """The configuration in the words of its options: profile and every changed setting."""
        settings = self.recipe.get("settings") or {}
        parts = [f"{self.recipe.get('profile')}"] + [f"{key}={_shown(value)}" for key, value in sorted(settings.items())]
        if not settings:
            parts.append("defaults")
        if self.recipe.get("seed") not in (None, 17):
            parts.append(f"seed {self.recipe['seed']}")
        return " ".join(parts)


@dataclass
class Family:
    """Every configuration judged on one set of labeled rows, in the order first tried."""

    rows: str | None
    configurations: list = field(default_factory=list)

    @property
    def size(self) -> int:
        """K: the configurations tried on these rows."""
        return len(self.configurations)

    def index_of(self, run_id: str) -> int | None:
        """k (1-based) of the configuration `run_id` ran, None when it is not counted."""
        return next((k for k, c in enumerate(self.configurations, start=1) if run_id in c.runs), None)

    def of_run(self, run_id: str) -> Configuration | None:
        k = self.index_of(run_id)
        return None if k is None else self.configurations[k - 1]


def rows_key(run_lines: list[dict], known: dict | None = None) -> str | None:
    """The labeled rows a run scored (`data.labeled_rows`). A run written before moola recorded it
    counts by its whole data fingerprint: on the rows of a later run with the same fingerprint
    (`known`: fingerprint -> labeled rows, `labeled_rows_of`), else on rows of its own."""
    for line in run_lines:
        data = line.get("data") or {}
        if data.get("labeled_rows"):
            return str(data["labeled_rows"])
    for line in run_lines:
        data = line.get("data") or {}
        if data.get("fingerprint"):
            return (known or {}).get(data["fingerprint"], f"data:{data['fingerprint']}")
    return None


def labeled_rows_of(lines: list[dict]) -> dict:
    """data fingerprint -> labeled rows, from the lines that record both."""
    return {data["fingerprint"]: str(data["labeled_rows"]) for data in (line.get("data") or {} for line in lines)
            if data.get("fingerprint") and data.get("labeled_rows")}


def config_key(recipe: dict | None) -> str | None:
    """A digest of the recipe entries that make a configuration (module docstring)."""
    if not recipe:
        return None
    payload = json.dumps({key: recipe.get(key) for key in CONFIGURATION}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def run_recipe(run_lines: list[dict]) -> dict | None:
    return next((line["recipe"] for line in run_lines if line.get("recipe")), None)


def looked(run_lines: list[dict]) -> bool:
    """Whether the run scored a model on the rows (a line with out-of-fold predictions)."""
    return any((line.get("oof") or {}).get("pred") for line in run_lines)


def counted(run_lines: list[dict], controls: bool = False) -> bool:
    """A run that looked at the rows; negative controls only when `controls` (a `--shuffle-labels`
    sweep is ranked among its own runs, so that select can say it delivers nothing)."""
    return (looked(run_lines) and (controls or not shuffled(run_lines))
            and config_key(run_recipe(run_lines)) is not None)


def family_of(lines: list[dict], rows: str | None, controls: bool = False, known: dict | None = None) -> Family:
    """The configurations of every counted run in `lines` (a whole results file) on `rows`. `known`:
    more fingerprint -> labeled rows pairs (a run about to start knows its own)."""
    family = Family(rows)
    by_key: dict = {}
    known = {**labeled_rows_of(lines), **(known or {})}
    for run in run_ids(lines):
        run_lines = [line for line in lines if line["run_id"] == run]
        if rows is None or rows_key(run_lines, known) != rows or not counted(run_lines, controls):
            continue
        recipe = run_recipe(run_lines)
        key = config_key(recipe)
        if key not in by_key:
            by_key[key] = Configuration(key, recipe)
            family.configurations.append(by_key[key])
        configuration = by_key[key]
        configuration.runs.append(run)
        configuration.lines = merged(configuration.lines, run_lines)
        sweep = (run_lines[0].get("family") or {}).get("sweep")
        if sweep and sweep not in configuration.sweeps:
            configuration.sweeps.append(sweep)
    return family


def family_of_run(lines: list[dict], run_id: str) -> Family:
    """The family of the rows `run_id` scored."""
    return family_of(lines, rows_key([line for line in lines if line["run_id"] == run_id], labeled_rows_of(lines)))


def merged(earlier: list[dict], later: list[dict]) -> list[dict]:
    """Per gate, the later run's line unless it did not score the gate (not run, skipped) and the
    earlier one did; in gate order."""
    by_gate = {line["gate"]: line for line in earlier}
    for line in later:
        kept = by_gate.get(line["gate"])
        if kept is None or line.get("status") not in ("not_run", "skipped") or kept.get("status") in ("not_run", "skipped"):
            by_gate[line["gate"]] = line
    return [by_gate[gate] for gate in sorted(by_gate)]


def position(lines: list[dict], rows: str | None, recipe: dict | None) -> dict:
    """Where a run about to start stands: `{"rows", "configuration", "k", "K"}` — k of K
    configurations tried on `rows`, this one included (an identical rerun keeps its k and K)."""
    family = family_of(lines, rows, known={recipe["data"]: rows} if recipe and recipe.get("data") else None)
    key = config_key(recipe)
    keys = [c.key for c in family.configurations]
    k = keys.index(key) + 1 if key in keys else len(keys) + 1
    return {"rows": rows, "configuration": key, "k": k, "K": max(len(keys), k)}


def words(k: int | None, size: int) -> str:
    """"configuration k of K tried on these rows", as every place prints it."""
    if k is None:
        return f"{size} configuration(s) tried on these rows"
    return f"configuration {k} of {size} tried on these rows"


def _shown(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)
