"""Root conftest: the `moola` options and the results plugin (one JSON line per gate outcome).

Order, as in pytest's own plugins: constants, `pytest_addoption`, `pytest_configure`, the record a
gate fills, the plugin class. Lines are built by `moola.results.build_line` (unit-tested); the
hooks here only decide the status and call it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# MiniRocket's numba kernels compile once into a project-local cache (SPEC §7), not per run.
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).parent / ".numba_cache"))

from moola.artifacts import GATE_OF, mark_gate, mark_selected
from moola.data.dataset import check_data
from moola.data.errors import Problem
from moola.deploy.archive import archive_run
from moola.deploy.select import judged
from moola.iterate.family import position, words
from moola.parallel.pool import starting_worker
from moola.recipe import make_recipe
from moola.report import format_run
from moola.report.ending import ending
from moola.results import GATES, GateWarning, append_line, build_line, read_lines, versions
from moola.stages.context import data_root, describe_protocol, resolve_settings

GATE_FILE = re.compile(r"^test_(\d+)_(\w+)\.py$")
PLUGIN_NAME = "moola-results"


def pytest_addoption(parser):
    group = parser.getgroup("moola", "moola gate suite")
    group.addoption("--data-dir", default=None, help="data root (default: data/ under the rootdir)")
    group.addoption("--artifacts-dir", default=None, help="artifact cache and models (default: artifacts/)")
    group.addoption("--results", default=None, help="JSONL results file (default: gated_workflow_results.jsonl)")
    group.addoption("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"), help="torch device")
    group.addoption("--profile", default="auto", help="full | quick | auto (full on CUDA, quick elsewhere)")
    group.addoption("--set", dest="moola_set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a profile field, e.g. --set pretrain.batch_size=256 (repeatable)")
    group.addoption("--gate-policy", default=None, choices=("point", "ci"),
                    help="ci (default): a comparison passes only when its 95%% block-bootstrap CI clears the "
                         "rule; point: the point comparisons on the same pooled numbers")
    group.addoption("--cv", default=None, choices=("holdout", "blocked", "walk-forward"),
                    help="evaluation protocol (default blocked): holdout = the split file exactly as before; "
                         "blocked = K contiguous blocks in time order, each scored once; walk-forward = "
                         "each block scored by models trained only on earlier rows")
    group.addoption("--folds", type=int, default=None, help="K blocks for blocked/walk-forward (default 5)")
    group.addoption("--seeds", type=int, default=None,
                    help="repeat every trained model with seeds SEED … SEED+S-1 (default: quick 1, full 3)")
    group.addoption("--nproc", type=int, default=None, metavar="N",
                    help="pretrain on N processes with torchrun (DDP; one GPU each on CUDA), the same as "
                         "--set pretrain.devices=N (default 1: in this process)")
    group.addoption("--seed", type=int, default=17, help="seed for torch, numpy, python, sklearn, MiniRocket")
    group.addoption("--start-gate", type=int, default=None, help="first gate to run (0-7)")
    group.addoption("--end-gate", type=int, default=None, help="last gate to run (0-7)")
    group.addoption("--demo", nargs="?", const="seed", default=None, metavar="LAYOUT",
                    help="use an embedded demo dataset: seed (the default: timestamps, one span per window) or "
                         "user-layout (laid out like the user's files: no timestamps, several spans per window, "
                         "a sliding pool holding every labeled window)")
    group.addoption("--fresh", action="store_true", help="ignore cached artifacts (retrain the encoder)")
    group.addoption("--sweep-id", default=None, metavar="ID:K",
                    help="set by python -m moola sweep: this run is configuration K of sweep ID (recorded in every "
                         "line's family)")
    group.addoption("--shuffle-labels", action="store_true",
                    help="negative control: permute every fold's train labels (seeded) before any training; "
                         "a sound suite fails at gate 4 or earlier. Models go under ARTIFACTS/negative_control/")


def _runs_gates(config) -> bool:
    gates = config.rootpath / "gates"
    for arg in config.args:
        path = (config.invocation_params.dir / arg.split("::")[0]).resolve()
        if path == gates or gates in path.parents or path in gates.parents:
            return True
    return False


def _quiet_failures(config) -> bool:
    """A run of gates alone, with the live log on at INFO or below, and no --show-capture given."""
    given = " ".join([*map(str, config.invocation_params.args), os.environ.get("PYTEST_ADDOPTS", ""),
                      *config.getini("addopts")])
    level = logging.getLevelName(str(config.getoption("log_cli_level") or config.getini("log_cli_level") or "INFO").upper())
    gates = config.rootpath / "gates"
    only_gates = bool(config.args) and all(
        (config.invocation_params.dir / str(arg).split("::")[0]).resolve() in (gates, *gates.rglob("*.py"))
        for arg in config.args)
    return (only_gates and config.getini("log_cli") and isinstance(level, int) and level <= logging.INFO
            and "--show-capture" not in given)


def _narrowed(config) -> bool:
    """True when the run may select part of the suite (-k, -m, a file, a node id, gate bounds,
    --lf/--sw: pytest's cache picks the tests)."""
    return bool(_selection(config))


def _selection(config) -> str:
    """How the run chose its gates, in the words of its command line ("" for the whole suite)."""
    option, parts = config.option, []
    if option.keyword:
        parts.append(f"-k {option.keyword}")
    if option.markexpr:
        parts.append(f"-m {option.markexpr}")
    if option.start_gate is not None:
        parts.append(f"--start-gate {option.start_gate}")
    if option.end_gate is not None:
        parts.append(f"--end-gate {option.end_gate}")
    if getattr(option, "lf", False):
        parts.append("--lf")
    if getattr(option, "stepwise", False):
        parts.append("--sw")
    parts += [arg for arg in config.args if "::" in arg or arg.endswith(".py")]
    return " ".join(parts)


def _option_overrides(option) -> list[str]:
    """Profile fields set by their own options (given ones only: the profile's defaults stand otherwise)."""
    pairs = {"thresholds.gate_policy": option.gate_policy, "evaluation.cv": option.cv,
             "evaluation.folds": option.folds, "evaluation.seeds": option.seeds, "pretrain.devices": option.nproc}
    return [f"{key}={value}" for key, value in pairs.items() if value is not None]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    if starting_worker():
        raise pytest.UsageError(
            "pytest started inside a fit worker that was importing the script that runs pytest: that script calls "
            "pytest.main() outside an `if __name__ == \"__main__\":` block, so every worker would run the gates "
            "again. Fix: put the pytest.main(...) call under that guard")
    config.addinivalue_line("markers", "gate(number): a gate test; set automatically from its module name")
    if _narrowed(config):
        # Dependencies on gates outside the selection must not skip the selected gate (SPEC §5);
        # pytest-dependency reads this option in its own pytest_configure, which runs after ours.
        config.option.ignore_unknown_dependency = True
    if _quiet_failures(config):
        # the live log already showed every line a failing gate logged: its failure shows the rule's message
        config.option.showcapture = "no"
    try:
        settings = resolve_settings(
            config.rootpath, data_dir=config.option.data_dir, artifacts_dir=config.option.artifacts_dir,
            results=config.option.results, device=config.option.device, profile=config.option.profile,
            overrides=[*_option_overrides(config.option), *config.option.moola_set],
            seed=config.option.seed, fresh=config.option.fresh, shuffle_labels=config.option.shuffle_labels,
            demo=config.option.demo or "")
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.pluginmanager.register(ResultsPlugin(config, settings), PLUGIN_NAME)


@dataclass
class GateRecord:
    """What a gate test records; the plugin turns it into the results line."""

    model: str | None = None
    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    comparison: dict | None = None
    artifacts: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    warning: str | None = None

    def warn(self, message: str) -> None:
        """Advisory gates (6, 7): the test passes, the line says `warning`, pytest's summary shows it."""
        self.warning = message
        warnings.warn(message, GateWarning, stacklevel=2)


RECORD_KEY = pytest.StashKey[GateRecord]()
DURATION_KEY = pytest.StashKey[float]()


@pytest.fixture
def gate_record(request) -> GateRecord:
    """The record of the running gate (filled by the test, written by the plugin)."""
    return request.node.stash.setdefault(RECORD_KEY, GateRecord())


def _gate_of(item) -> str | None:
    match = GATE_FILE.match(item.path.name)
    return f"{match.group(1)}_{match.group(2)}" if match else None


def _reason(call, report) -> str | None:
    if report.skipped:
        longrepr = report.longrepr
        return str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
    if call.excinfo is None:
        return None
    value = call.excinfo.value
    if isinstance(value, pytest.fail.Exception):  # pytest.fail(msg, pytrace=False): the message is the reason
        return str(value.msg or value)
    if isinstance(value, AssertionError):
        # pytest's assertion rewriting appends "\nassert <expr>": keep the gate's own message.
        return str(value).split("\nassert ")[0].strip() or call.excinfo.exconly()
    return f"{type(value).__name__}: {value}"


class ResultsPlugin:
    """Writes one line per gate outcome, and a `not_run` line for each gate a stopped session skipped."""

    def __init__(self, config, settings):
        self.config = config
        self.settings = settings
        self.context: dict = {}  # filled by the session `run` fixture once the data is loaded
        self.checked = None  # (dataset or None, problems): read once per session (`data_check`)
        self.caught: list = []  # warnings raised reading the data
        self.gate_items: list = []
        self.written: dict = {}  # gate -> status
        self.lines: list = []  # this session's lines, for the terminal summary
        self.pending: dict = {}  # nodeid -> the line's arguments, written once the item's warnings are in
        self.warnings: dict = {}  # nodeid -> third-party warnings raised while the gate ran
        self.session_warnings: list = []  # raised outside any gate (imports, reading the data): first line
        self.scope: dict | None = None  # which gates this session runs (set once collected)
        self.encoder = None  # the session's EncoderOutcome, once a fixture obtained it (gate 3's numbers)
        self.encoder_unattributed = 0.0  # its seconds, still inside the duration of the gate that set it up
        self.encoder_moved: dict = {}  # gate -> seconds of obtaining the encoder moved out of its duration
        self.running: str | None = None  # the gate item in progress (a Ctrl-C names it)
        self.selection = None  # moola select on this session's lines (terminal summary)

    def base_context(self) -> dict:
        settings = self.settings
        return {"profile": settings.profile.name, "device": self.context.get("device", settings.device_type),
                # Before the session's `run` fixture applies it (gate 0), the runtime asked for.
                "runtime": self.context.get("runtime") or {"deterministic": settings.profile.runtime.deterministic,
                                                           "device": settings.device_type,
                                                           "state": "requested (not applied yet)"},
                "seed": settings.seed,
                # Gate 0 writes before the `run` fixture: the summary of the data the header read.
                "data": self.context.get("data") or {"root": str(settings.data_root), **(
                    self.checked[0].summary() if self.checked and self.checked[0] is not None else {}), **(
                    {"train_labels": "shuffled (a negative control)"} if settings.shuffle_labels else {})},
                "evaluation": self.context.get("evaluation") or {
                    "description": describe_protocol(settings.profile), **dataclasses.asdict(settings.profile.evaluation),
                    "seeds": list(range(settings.seed, settings.seed + settings.profile.evaluation.seeds)),
                    "gate_policy": settings.profile.thresholds.gate_policy},
                "scope": self.scope, "versions": self.versions, "family": self.family(),
                # None before the `run` fixture resolved the data (gate 0, a run stopped there)
                "recipe": self.context.get("recipe")}

    def family(self) -> dict | None:
        """Where this run stands among the configurations tried on the same labeled rows
        (`moola.iterate.family.position`), from the results file as it was when the run began."""
        if not hasattr(self, "_family"):
            if self.checked is None:  # the data is not read yet: ask again with the next line
                return None
            self._family = None
            dataset = self.checked[0]
            if dataset is not None:
                settings = self.settings
                recipe = make_recipe(settings.profile, settings.seed, dataset.fingerprint, settings.device_type,
                                     settings.shuffle_labels)
                try:
                    recorded = read_lines(settings.results_path)
                except ValueError:  # a damaged results file: gate 0 and report say so; count this run alone
                    recorded = []
                sweep, _, point = (self.config.option.sweep_id or "").partition(":")
                self._family = {**position(recorded, dataset.labeled_rows, recipe), "sweep": sweep or None,
                                "point": int(point) if point.isdigit() else None}
                if settings.shuffle_labels:  # a negative control looks at shuffled labels: not a configuration
                    self._family.update(k=None, K=self._family["K"] - 1, negative_control=True)
        return self._family

    @property
    def versions(self) -> dict:
        if not hasattr(self, "_versions"):
            self._versions = versions(self.config.rootpath)
        return self._versions

    def pytest_report_header(self, config):
        settings = self.settings
        lines = [(f"moola: profile {settings.profile.name} (--profile {config.option.profile}), "
                  f"device {settings.requested_device} -> {settings.device_type}, seed {settings.seed}"),
                 f"moola: evaluation {describe_protocol(settings.profile)}",
                 (f"moola: data {f'embedded demo ({settings.demo}) under ' if settings.demo else ''}"
                  f"{settings.data_root}, "
                  f"artifacts {settings.artifacts_dir}, results {settings.results_path}")]
        if settings.shuffle_labels:
            lines.append(f"moola: NEGATIVE CONTROL (--shuffle-labels): train labels permuted with seed {settings.seed}; "
                         "a sound suite fails at gate 4 or earlier. Models go to "
                         "negative_control/ under artifacts")
        for problem in settings.setup_problems:
            lines.append(f"moola: PROBLEM {problem}")
        if _runs_gates(config):
            dataset, problems = self.data_check()
            if self.caught:
                lines.append(f"moola: {len(self.caught)} library warning(s) reading the data (in the first results "
                             f"line): {self.caught[0]['category']}: {self.caught[0]['message'][:200]}")
            lines.append(f"moola: dataset fingerprint {dataset.fingerprint}" if dataset else
                         f"moola: dataset unusable ({len(problems)} problem(s); gate 0 lists them)")
            family = self.family()
            if family is not None and family.get("negative_control"):
                lines.append(f"moola: a negative control is not counted among the {family['K']} configuration(s) "
                             "tried on these rows")
            elif family is not None:
                lines.append(f"moola: {words(family['k'], family['K'])} (labeled rows {family['rows']}"
                             + (f", sweep {family['sweep']}" if family["sweep"] else "") + ")"
                             + ("" if family["K"] < 2 else ": select and the report also judge gates 2 and 4 and "
                                "every model's signal over all of them (docs/iterate.md)"))
            if dataset is not None:
                lines.append(f"moola: {len(dataset.y)} labeled rows from {dataset.n_windows} distinct windows (the "
                             f"effective n behind every verdict: one window is ~{100 / dataset.n_windows:.1f} pp of "
                             "accuracy; gate 0 lists conflicts and duplicates)")
        return lines

    def data_check(self) -> tuple:
        """`(dataset or None, problems)`, read once per session: by the header, or (with -q, where
        pytest skips the header) by whichever fixture asks first. Never raises."""
        if self.checked is None:
            # pytest does not watch warnings outside a test: collect them for the first line.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    root = data_root(self.settings)
                except Exception as exc:  # noqa: BLE001 -- e.g. --demo with an artifacts dir that cannot hold it
                    self.checked = (None, [Problem(str(self.settings.data_root), "a data root moola can prepare",
                                                   f"{type(exc).__name__}: {exc}",
                                                   "check --data-dir / --artifacts-dir")])
                else:
                    profile = self.settings.profile
                    self.checked = check_data(root, profile.data, profile.evaluation.cv)
            self.caught = []
            for warning in caught:
                self._keep(self.session_warnings, warning)
                self._keep(self.caught, warning)
        return self.checked

    def judged_gates(self) -> frozenset:
        """The gates this session runs (after -k, --start-gate, …): only their models are saved."""
        return frozenset(_gate_of(item) for item in self.gate_items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_metadata(self, metadata, config):
        """pytest-json-report's `environment` (via pytest-metadata): say what this run is."""
        settings = self.settings
        metadata["moola"] = {"profile": settings.profile.name, "device": settings.device_type,
                             "data_root": str(settings.data_root), "results": str(settings.results_path),
                             "seed": settings.seed, "run_id": settings.run_id, **self.versions}
        # pytest-json-report 1.5 reads `config._metadata`, which pytest-metadata 3 replaced with a
        # stash entry (pytest-json-report issue #89): point the old name at the same dict.
        if not getattr(config, "_metadata", None):
            config._metadata = metadata

    def pytest_collection_modifyitems(self, session, config, items):
        start, end = config.option.start_gate, config.option.end_gate
        keep, drop = [], []
        for item in items:
            gate = _gate_of(item)
            number = int(gate.split("_")[0]) if gate else None
            outside = number is not None and ((start is not None and number < start) or
                                              (end is not None and number > end))
            (drop if outside else keep).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep

    def pytest_collection_finish(self, session):
        self.gate_items = [item for item in session.items if _gate_of(item)]
        gates = sorted({int(_gate_of(item).split("_")[0]) for item in self.gate_items})
        # narrowed: this session judges part of the suite; `report`/`predict` read a run of the whole
        # suite as "the latest run" and skip narrowed ones unless asked (`results.choose_run`)
        self.scope = {"narrowed": gates != sorted(GATES), "gates": gates, "selection": _selection(self.config)
                      or ("every gate" if gates == sorted(GATES) else "")}

    def encoder_obtained(self, outcome) -> None:
        """The `pretrained` fixture obtained the encoder (cache or pretraining): gate 3's numbers are
        in `outcome.record`; its seconds move from the gate whose setup built it into gate 3's line."""
        self.encoder = outcome
        self.encoder_unattributed = outcome.duration_s + outcome.record.get("metrics", {}).get("probe_s", 0.0)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        gate = _gate_of(item)
        if gate is None or gate in self.written:
            return
        item.stash[DURATION_KEY] = item.stash.get(DURATION_KEY, 0.0) + report.duration
        if report.when == "setup" and self.encoder_unattributed:
            # pretraining ran in this gate's setup (a shared fixture): its time is gate 3's work
            if gate != GATES[3] and self._runs_gate(GATES[3]):
                self.encoder_moved[gate] = self.encoder_unattributed
                item.stash[DURATION_KEY] -= self.encoder_unattributed
            self.encoder_unattributed = 0.0  # attributed once, to the gate whose setup obtained it
        if report.when == "setup" and report.passed:
            return
        if report.when == "teardown" and report.passed:
            return
        record = item.stash.get(RECORD_KEY, GateRecord())
        if report.skipped:
            status = "skipped"
        elif report.failed:
            status = "failed" if report.when == "call" else "error"
        else:
            status = "warning" if record.warning else "passed"
        reason = record.warning if status == "warning" else _reason(call, report)
        self.written[gate] = status
        self.pending[item.nodeid] = (gate, status, reason, item.stash.get(DURATION_KEY, 0.0), record)

    def _runs_gate(self, gate: str) -> bool:
        return any(_gate_of(item) == gate for item in self.gate_items)

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item, nextitem):
        # pytest's warnings plugin wraps this hook too (tryfirst) and reports the item's warnings
        # when its wrapper exits; this plugin registers later, so its wrapper runs outside that
        # one and resumes after them: the line is written once, with the gate's warnings in it.
        self.running = _gate_of(item)
        outcome = yield
        excinfo = outcome.excinfo  # (type, value, traceback) or None; pluggy >= 0.12
        if not (excinfo and issubclass(excinfo[0], KeyboardInterrupt)):  # else: the gate Ctrl-C stopped
            self.running = None
        self.flush(item.nodeid)

    def pytest_warning_recorded(self, warning_message, when, nodeid, location):
        """A library's warning: shown by pytest, recorded in a line, never fatal. One raised while a
        gate ran goes in that gate's line; one raised at import or collection, in the first line."""
        if issubclass(warning_message.category, GateWarning):
            return
        target = self.warnings.setdefault(nodeid, []) if when == "runtest" and nodeid else self.session_warnings
        self._keep(target, warning_message)

    @staticmethod
    def _keep(seen: list, warning_message) -> None:
        entry = {"category": warning_message.category.__name__, "message": str(warning_message.message)[:500],
                 "where": f"{warning_message.filename}:{warning_message.lineno}"}
        if entry not in seen:
            seen.append(entry)

    def flush(self, nodeid: str) -> None:
        if nodeid in self.pending:
            gate, status, reason, duration_s, record = self.pending.pop(nodeid)
            self.write(gate, status, reason, duration_s, record, self.warnings.pop(nodeid, []))

    def write(self, gate: str, status: str, reason, duration_s: float, record: GateRecord,
              warnings_seen: list | None = None) -> None:
        # Warnings raised outside any gate go in the first line written, whatever its status.
        warnings_seen, self.session_warnings = [*self.session_warnings, *(warnings_seen or [])], []
        model_path = (record.artifacts or {}).get("model")
        if model_path and str(model_path).endswith(".pt"):
            # The model was saved before its gate ruled: its metadata now says how the gate went.
            try:
                mark_gate(Path(model_path), self.settings.run_id, status, reason,
                          requires=self.requirements(record.extra.get("requires")))
            except Exception as exc:  # noqa: BLE001 -- a line must still be written
                warnings_seen.append({"category": type(exc).__name__, "where": str(model_path),
                                      "message": f"could not record the gate's verdict in the model: {exc}"[:500]})
        extra = {**record.extra, "warnings": warnings_seen} if warnings_seen else dict(record.extra)
        if gate in self.encoder_moved:
            extra["duration_excludes"] = {"encoder_obtained_s": self.encoder_moved[gate],
                                          "counted_in": GATES[3]}
        if gate == GATES[3] and self.encoder is not None and self.encoder_moved:
            duration_s += sum(self.encoder_moved.values())  # pretraining (in another gate's setup) is gate 3's work
        line = build_line(gate, status, run_id=self.settings.run_id, reason=reason, duration_s=duration_s,
                          model=record.model, config=record.config, metrics=record.metrics,
                          comparison=record.comparison, artifacts=record.artifacts, extra=extra,
                          context=self.base_context())
        append_line(self.settings.results_path, line)
        self.written[gate] = status
        self.lines.append(line)

    def requirements(self, requires: dict | None) -> dict | None:
        """A gate's record of the gates it builds on (gate 5: gate 4's rule on this session's numbers),
        overruled by this session's own line for such a gate when that line did not pass (gate 4
        crashed, say, under -p no:dependency: its rule was computed, its gate did not approve)."""
        if requires is None:
            return None
        overruled = dict(requires)
        for gate, record in requires.items():
            status = self.written.get(gate)
            if status is not None and status not in ("passed", "warning") and record.get("holds"):
                overruled[gate] = {**record, "holds": False, "failures": [f"gate {gate} {status} in this session"]}
        return overruled

    def pytest_sessionfinish(self, session, exitstatus):
        option = self.config.option
        if option.collectonly or getattr(option, "setupplan", False) or getattr(option, "setuponly", False):
            return  # --co, --setup-plan, --setup-only inspect the suite: not a run, no lines
        for nodeid in list(self.pending):  # an item whose protocol never returned (interrupted)
            self.flush(nodeid)
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        stopped = [g for g, s in self.written.items() if s in ("failed", "error")]
        for item in self.gate_items:
            gate = _gate_of(item)
            if gate in self.written:
                continue
            if interrupted:
                why = ("interrupted (Ctrl-C) while this gate ran" if gate == self.running
                       else "interrupted (Ctrl-C) before this gate ran")
            else:
                why = (f"session stopped after gate {stopped[-1]} {self.written[stopped[-1]]} (-x)" if stopped
                       else "session stopped before this gate ran")
            self.write(gate, "not_run", why, 0.0, self.unjudged_record(gate, why))
        self.mark_unjudged_models()
        if not interrupted and self.lines:
            self.select()
        if self.lines and not self.settings.shuffle_labels:
            try:  # a later run overwrites models/*.pt: a choice across runs must find this run's files
                archive_run(self.settings.artifacts_dir, self.settings.run_id, GATE_OF)
            except OSError as exc:
                warnings.warn(f"could not keep this run's models under {self.settings.artifacts_dir}/runs: {exc}",
                              stacklevel=1)

    def unjudged_record(self, gate: str, why: str) -> GateRecord:
        """A gate that did not rule; gate 3's line still gets what pretraining did when the encoder was
        obtained this session (in gate 1's fixture, say, before -x stopped at gate 2)."""
        if gate != GATES[3] or self.encoder is None:
            return GateRecord()
        if not self.encoder.record:  # computing gate 3's numbers raised in the shared fixture
            return GateRecord(extra={"unjudged": f"{why}: gate 3's numbers could not be computed in the shared "
                                     f"fixture ({self.encoder.record_error}); run "
                                     "pytest gates -k pretrain to see the error"})
        record = GateRecord(**{key: value for key, value in self.encoder.record.items()})
        record.extra = {**record.extra, "unjudged": f"{why}: the encoder was obtained in a shared fixture; its "
                        "numbers are recorded here, and gate 3's rule did not judge them"}
        return record

    def select(self) -> None:
        """`moola select` on this session's lines: the recommended model's file says so (the control
        becomes deliverable this way), and the terminal summary ends with it."""
        try:
            self.selection = judged(self.lines, read_lines(self.settings.results_path))
        except Exception as exc:  # noqa: BLE001 -- the lines are written; say it and go on
            warnings.warn(f"moola select could not rank this run's models: {type(exc).__name__}: {exc}", stacklevel=1)
            return
        chosen = self.selection.recommended
        # only a run of the whole suite marks its pick: a narrowed run's ranking lacks the models it did not score
        if chosen is not None and chosen.path and not (self.scope and self.scope["narrowed"]):
            try:
                mark_selected(Path(chosen.path), self.settings.run_id, self.selection.as_dict())
            except Exception as exc:  # noqa: BLE001 -- the results are written; say it and go on
                warnings.warn(f"{chosen.path}: could not record the recommendation: {exc}", stacklevel=1)

    def mark_unjudged_models(self) -> None:
        """A model this run saved whose gate never ruled on it (a fixture that crashed after the save,
        a session stopped before the gate ran): its file says so."""
        artifacts_dir = self.settings.artifacts_dir
        for folder in (artifacts_dir, artifacts_dir / "negative_control"):
            for relative, gate in GATE_OF.items():
                status = self.written.get(gate, "not_run")
                reason = (f"gate {gate} did not run in this session; this model was trained for a later gate"
                          if status == "not_run" else f"gate {gate} {status} before judging this model")
                try:
                    mark_gate(folder / relative, self.settings.run_id, status, reason, only_pending=True)
                except Exception as exc:  # noqa: BLE001 -- the results are written; say it and go on
                    warnings.warn(f"{folder / relative}: could not record its gate's verdict: {exc}", stacklevel=1)

    def pytest_terminal_summary(self, terminalreporter):
        if not self.written:
            return
        terminalreporter.section("moola gates")
        # delta = the gate's candidate minus its baseline, on the same val rows, with a paired
        # bootstrap 95% CI: an interval that crosses zero means the point rule decided within noise.
        terminalreporter.write_line(format_run(self.lines, results=self.settings.results_path))
        terminalreporter.write_line(f"results appended to {self.settings.results_path}")
        if self.selection is not None:
            terminalreporter.section("what happened, and what to do next")
            terminalreporter.write_line(ending(self.lines, self.selection, self.command_options()))

    def resolved_root(self) -> Path:
        """The folder the data was read from (--demo: the generated dataset's own folder)."""
        try:
            return data_root(self.settings)
        except Exception:  # noqa: BLE001 -- gate 0 said why; the hint falls back to the option
            return self.settings.data_root

    def command_options(self) -> dict:
        """The options a next command must repeat to read the same data, models and results, and to
        run the same recipe (so a rerun of later gates reuses this run's encoder)."""
        option = self.config.option
        given = [("--demo", True if option.demo == "seed" else option.demo), ("--data-dir", option.data_dir),
                 ("--artifacts-dir", option.artifacts_dir),
                 ("--results", option.results), ("--profile", option.profile if option.profile != "auto" else None),
                 ("--device", option.device if option.device != "auto" else None),
                 ("--seed", option.seed if option.seed != 17 else None), ("--cv", option.cv), ("--folds", option.folds),
                 ("--seeds", option.seeds), ("--gate-policy", option.gate_policy), ("--nproc", option.nproc),
                 ("--shuffle-labels", option.shuffle_labels),
                 *(("--set", value) for value in option.moola_set)]
        run_options = " ".join(name if value is True else f"{name} {value}" for name, value in given
                               if value not in (None, False))
        return {"run_options": run_options, "artifacts_dir": option.artifacts_dir, "results": option.results,
                "data_root": str(self.resolved_root()), "narrowed": bool(self.scope and self.scope["narrowed"])}

