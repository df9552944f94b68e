"""`python -m moola sweep --grid KEY=V1,V2 … -- [pytest options]`: the whole gate suite once per
configuration of a grid, on the same data, protocol and seeds, then one choice across them.

Each configuration is `pytest gates [options] --set KEY=VALUE … --sweep-id ID:k`: its lines carry
the sweep id and point k (`family.sweep`, `family.point`), so `moola select --sweep ID` finds
them. The id is a digest of the grid and the options: the same command again continues the same
sweep, running only the configurations with no finished run (a run `-x` stopped early counts: it
was looked at; one interrupted by Ctrl-C does not). Encoders come from the artifact cache as in
any run. Each run's output goes to `ARTIFACTS/runs/sweeps/ID/k.log`; the terminal gets one
progress line per configuration.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from moola.config import Profile, apply_overrides, valid_keys
from moola.iterate.family import rows_key
from moola.results import GATES, read_lines, run_ids

DEFAULT_RESULTS = "gated_workflow_results.jsonl"
DEFAULT_ARTIFACTS = "artifacts"
# options the sweep owns: a configuration is the grid's --set, its lines carry the sweep's id
OWNED = ("--sweep-id", "--start-gate", "--end-gate")


@dataclass(frozen=True)
class Sweep:
    grid: tuple  # ((key, (value, …)), …) in the order given
    options: tuple  # pytest options, as given after --

    @property
    def id(self) -> str:
        payload = json.dumps({"grid": self.grid, "options": self.options})
        return hashlib.sha256(payload.encode()).hexdigest()[:10]

    @property
    def points(self) -> list:
        """Every configuration: a tuple of `KEY=VALUE` settings, the grid's product in order."""
        keys = [key for key, _ in self.grid]
        return [tuple(f"{key}={value}" for key, value in zip(keys, values))
                for values in itertools.product(*(values for _, values in self.grid))]

    def option(self, name: str, default: str) -> str:
        """The value of a pytest option given after -- (`--name X` or `--name=X`)."""
        found = default
        for i, word in enumerate(self.options):
            if word == name and i + 1 < len(self.options):
                found = self.options[i + 1]
            elif word.startswith(name + "="):
                found = word.split("=", 1)[1]
        return found


def parse_grid(grids: list, options: list) -> Sweep:
    """`--grid KEY=V1,V2` (repeatable) into a Sweep; every key and value checked as `--set` checks
    them, so a typo stops here, not after the first configuration's hour."""
    if not grids:
        raise ValueError("sweep: expected at least one --grid KEY=V1,V2 (e.g. --grid pretrain.mask_strategy=random,block,"
                         "patch), found none")
    parsed, keys = [], set()
    known = valid_keys(Profile())
    for grid in grids:
        key, sep, values = grid.partition("=")
        key = key.strip()
        if not sep or not values.strip():
            raise ValueError(f"--grid {grid!r}: expected KEY=V1,V2,…, e.g. pretrain.mask_strategy=random,block,patch")
        if key not in known:
            raise ValueError(f"--grid {grid!r}: {key!r} is not a setting; expected one of the --set keys "
                             f"({', '.join(k for k in known if k.startswith(key.split('.')[0])) or ', '.join(known[:8])} …)")
        if key in keys:
            raise ValueError(f"--grid: {key} is given twice; put every value in one --grid {key}=V1,V2")
        keys.add(key)
        listed = isinstance(_field_default(key), tuple)
        if listed:
            raise ValueError(f"--grid {grid!r}: {key} holds a list, and a grid's values are separated by commas; "
                             f"sweep it by hand (pytest gates --set {key}=A,B, then another run)")
        if any(word.split("=")[0].strip() == key for word in _set_values(options)):
            raise ValueError(f"sweep: --set {key}=… is given after -- and --grid {key} sweeps it; give it once")
        chosen = tuple(dict.fromkeys(value.strip() for value in values.split(",") if value.strip()))
        for value in chosen:
            try:
                apply_overrides(Profile(), [f"{key}={value}"])
            except ValueError as exc:
                raise ValueError(f"--grid {grid!r}: {exc}") from None
        parsed.append((key, chosen))
    owned = [word for word in options if word.split("=")[0] in OWNED]
    if owned:
        raise ValueError(f"sweep: {owned[0]} cannot be given to a sweep: every configuration runs the whole suite "
                         "(-x may stop it early; it still counts)")
    return Sweep(tuple(parsed), tuple(options))


def _field_default(key: str):
    section, name = key.split(".")
    return getattr(getattr(Profile(), section), name)


def _set_values(options: list) -> list:
    """The KEY=VALUE words of --set options among the gate run's options."""
    values = []
    for i, word in enumerate(options):
        if word == "--set" and i + 1 < len(options):
            values.append(options[i + 1])
        elif word.startswith("--set="):
            values.append(word.split("=", 1)[1])
    return values


def finished(lines: list, sweep_id: str) -> dict:
    """point k -> run id of a finished run of it: its lines carry the sweep, every gate has its line
    (a session that ends writes `not_run` lines for what `-x` skipped; a killed one does not), none
    says interrupted (Ctrl-C), and no gate crashed (status error: rerun once fixed)."""
    done = {}
    for run in run_ids(lines):
        run_lines = [line for line in lines if line["run_id"] == run]
        family = next((line["family"] for line in run_lines if line.get("family")), {})
        if family.get("sweep") != sweep_id or family.get("point") is None:
            continue
        if {line["gate"] for line in run_lines} != set(GATES.values()):
            continue
        if any("interrupted (Ctrl-C)" in str(line.get("reason") or "") or line.get("status") == "error"
               for line in run_lines):
            continue
        done[int(family["point"])] = run
    return done


def command(sweep: Sweep, k: int) -> list:
    """The pytest command of configuration k (1-based)."""
    settings = [word for setting in sweep.points[k - 1] for word in ("--set", setting)]
    return [sys.executable, "-m", "pytest", "gates", *sweep.options, *settings, "--sweep-id", f"{sweep.id}:{k}"]


def outcome(lines: list, run: str) -> str:
    """What a configuration's run came to, in a few words."""
    run_lines = [line for line in lines if line["run_id"] == run]
    stopped = next((line for line in run_lines if line["status"] in ("failed", "error")), None)
    if stopped is not None:
        return f"gate {stopped['gate'].split('_')[0]} {stopped['status']}"
    return "every gate it judged passed"


def _say(text: str) -> None:
    print(text, flush=True)  # a progress line shows at once in a log file (nohup … > sweep.log), not at exit


def run_sweep(sweep: Sweep, say=_say) -> int:
    """Run every configuration not finished yet; then rank the sweep (`moola select --sweep`)."""
    if not Path("gates").is_dir():
        raise ValueError(f"sweep: expected the gates folder under {Path.cwd()} (each configuration runs pytest gates "
                         "there); run python -m moola sweep from the folder you run pytest gates in")
    results = Path(sweep.option("--results", DEFAULT_RESULTS))
    logs = Path(sweep.option("--artifacts-dir", DEFAULT_ARTIFACTS)) / "runs" / "sweeps" / sweep.id
    logs.mkdir(parents=True, exist_ok=True)
    total = len(sweep.points)
    done = finished(read_lines(results), sweep.id)
    say(f"sweep {sweep.id}: {total} configuration(s) of {' x '.join(f'{key} ({len(v)})' for key, v in sweep.grid)}"
        + (f"; {len(done)} already finished (continuing)" if done else "") + f"; logs under {logs}")
    started, ran = time.monotonic(), 0
    for k in range(1, total + 1):
        if k in done:
            continue
        log = logs / f"{k}.log"
        with log.open("w") as out:
            child = subprocess.Popen(command(sweep, k), stdout=out, stderr=subprocess.STDOUT)
            try:
                status = child.wait()
            except KeyboardInterrupt:  # the gate run got the Ctrl-C too: let it write its lines as interrupted
                try:
                    child.wait(timeout=60)
                except (KeyboardInterrupt, subprocess.TimeoutExpired):
                    child.kill()
                say(f"sweep interrupted during configuration {k} of {total}; the same command continues it "
                    f"({len(done)} finished)")
                return 130
        ran += 1
        lines = read_lines(results)
        done = finished(lines, sweep.id)
        rows = {rows_key([line for line in lines if line["run_id"] == run]) for run in done.values()}
        if len(rows) > 1:  # the data changed since earlier configurations ran: they looked at other rows
            say(f"sweep stopped: configuration {k} scored other labeled rows than the sweep's earlier configurations "
                f"({', '.join(sorted(map(str, rows)))}): the data changed since they ran. Start a new sweep for the "
                "new data (another --results file after --, or another grid); select --sweep ranks each rows' runs apart")
            return 1
        elapsed = time.monotonic() - started
        left = total - len(done)
        said = outcome(lines, done[k]) if k in done else f"no finished run (pytest exited {status})"
        say(f"  configuration {k} of {total} ({', '.join(sweep.points[k - 1])}): {said}; {_minutes(elapsed)} elapsed, "
            f"about {_minutes(elapsed / ran * left)} left (log {log})")
        if not 0 <= status <= 1 or k not in done:  # a usage error, a crash, a kill: later ones would fail alike
            tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
            say(f"sweep stopped: configuration {k}'s run did not finish (pytest exited {status}); the end of {log}:\n{tail}"
                "rerun the same command to continue once fixed")
            return status or 1
    return 0


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"

