"""Side-by-side timings: `python -m moola.bench [--repeats N] [--device cpu|cuda] [--json FILE]`.

Each comparison runs both variants on the same model, data and batch, interleaved (A, B, A,
B, ...), and reports medians and their ratio: shared machines drift, ratios measured in one run
do not. Targets: (a) fine-tuning with every technique on ≤ 1.3× a bare step, (b) pretraining
throughput ≤ 1.1× slower than a bare masked-reconstruction loop; (c) vectorised parquet
decoding of the 11,873-window pool against a per-row Python decode; on CUDA also (d)
pretraining in fp16 autocast + GradScaler against fp32 (`pretrain.mixed_precision`); (e) `moola
predict` on 10,000 windows with a two-member ensemble against one member's bare forward pass.
(g) a gate's fits (a quick gate 4: 5 folds and the refit) one after another in this process on
every thread (as before `moola.parallel`), one after another on one thread each, and together in
worker processes (`runtime.fit_workers`), with each way's time per optimizer step against a bare
step. `--pretrain-ddp` runs only (f): pretraining launched by torchrun on 1 and on 2 processes (gloo on
CPU, nccl on 2 GPUs), the same pool, global batch and epochs, windows/s side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from moola.artifacts import load_checkpoint
from moola.config import FinetuneConfig, PretrainConfig
from moola.data.demo import N_UNLABELED, generate
from moola.data.normalize import normalize_windows
from moola.data.parquet import read_windows, write_windows
from moola.data.pool_file import write_pool
from moola.models.enhanced_lstm import EnhancedSimpleLSTM
from moola.models.masked_autoencoder import MaskedAutoencoder
from moola.parallel.pool import FitPool, Job, one_thread, worker_count
from moola.stages.classifiers import HEAD, finetune_groups, finetune_options, finetune_schedule
from moola.training import launch
from moola.training.classifier import FitOptions, Phase, fit_classifier
from moola.training.masking import make_mask
from moola.training.pretrain import masked_mse, pretrain_encoder
from moola.training.regularizers import L2SP


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # CUDA kernels run asynchronously: time what they did, not their launch


def _medians(variants: dict, repeats: int) -> dict:
    """name -> median seconds of each variant, run in turn (A, B, …, A, B, …)."""
    times: dict = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            _sync()
            started = time.perf_counter()
            fn()
            _sync()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def _interleaved(first, second, repeats: int) -> tuple[float, float]:
    medians = _medians({"first": first, "second": second}, repeats)
    return medians["first"], medians["second"]


def bench_finetune(windows: np.ndarray, y: np.ndarray, device: torch.device, repeats: int) -> dict:
    """Seconds per optimizer step: every technique on vs a bare forward/backward/AdamW step."""
    bench = FitsBench(windows, y, device, epochs=4)
    steps = 4 * -(-len(windows) // 8)
    full_s, bare_s = _interleaved(lambda: fit_all_techniques(bench), lambda: bare_fit(bench), repeats)
    return {"full_step_ms": 1e3 * full_s / steps, "bare_step_ms": 1e3 * bare_s / steps, "ratio": full_s / bare_s,
            "target": 1.3}


@dataclass(frozen=True)
class FitsBench:
    """What `FitPool` needs of a run, for (g): every job's view is the same rows; each fits `epochs`."""

    windows: np.ndarray
    y: np.ndarray
    device: torch.device
    epochs: int = 3

    def for_fit(self, fold, seed):
        return self


def fit_all_techniques(bench: FitsBench) -> int:
    """A fine-tuning fit with every technique on: discriminative LRs, augmentation, L2-SP, clipping,
    EMA per step, SWA per epoch. Every group trains in every step (a frozen phase would make the
    step cheaper, not the techniques). Returns its optimizer steps."""
    config = FinetuneConfig(epochs=bench.epochs, frozen_epochs=1, unfreeze_every=1)
    torch.manual_seed(0)
    model = EnhancedSimpleLSTM(bench.windows.shape[2])
    _, lrs = finetune_schedule(config, 2)
    groups = finetune_groups(model)
    l2sp = L2SP.from_modules(model.encoder, [getattr(model, m) for m in HEAD], config.l2sp_alpha, config.l2sp_beta)
    fit = fit_classifier(model, bench.windows, bench.y, groups, [Phase("all", bench.epochs, tuple(groups))],
                         finetune_options(config, lrs, bench.epochs), bench.device, 0, 2, l2sp)
    return int(sum(fit.steps.values()))


def bare_fit(bench: FitsBench) -> None:
    """The same model, rows and batch: forward, backward and an AdamW step, nothing else."""
    torch.manual_seed(0)
    model = EnhancedSimpleLSTM(bench.windows.shape[2])
    fit_classifier(model, bench.windows, bench.y, {"all": list(model.parameters())},
                   [Phase("bare", bench.epochs, ("all",))], FitOptions(8, {"all": 1e-3}, grad_clip=0.0),
                   bench.device, 0, 2)


def bench_fits_together(windows: np.ndarray, y: np.ndarray, device: torch.device, repeats: int, n_fits: int = 6,
                        workers: int = 0) -> dict:
    """(g) Seconds for `n_fits` fits: before (in this process, every thread), one at a time on one
    thread, and together in `worker_count(workers)` processes (started before the timing)."""
    bench = FitsBench(windows, y, device)
    jobs = [Job((0, k), fit_all_techniques, None, 0) for k in range(n_fits)]
    pool = FitPool(bench, worker_count(workers, device.type))
    alone = FitPool(bench, 1)
    try:
        started = time.perf_counter()
        pool.run(jobs[:2])  # start the workers (once a session in a gate run) with two fits: not timed below
        startup_s = time.perf_counter() - started
        median = _medians({"before": lambda: [fit_all_techniques(bench) for _ in jobs],
                           "one_thread": lambda: alone.run(jobs), "together": lambda: pool.run(jobs)}, repeats)
    finally:
        pool.close()
    steps = n_fits * fit_all_techniques(bench)
    with one_thread():
        bare_s = _medians({"bare": lambda: bare_fit(bench)}, repeats)["bare"]
    bare_step_ms = 1e3 * bare_s / (steps / n_fits)
    return {"fits": n_fits, "workers": pool.workers, "threads": torch.get_num_threads(), "startup_s": startup_s,
            **{f"{name}_s": seconds for name, seconds in median.items()},
            "speedup": median["before"] / median["together"],
            **{f"{name}_step_ms": 1e3 * seconds / steps for name, seconds in median.items()},
            "bare_step_ms": bare_step_ms,
            "together_vs_bare": 1e3 * median["together"] / steps / bare_step_ms}


def bench_pretrain(windows: np.ndarray, device: torch.device, repeats: int) -> dict:
    """Windows per second: `pretrain_encoder` (schedule, clipping, val pass, checkpoint) vs a bare loop."""
    config = PretrainConfig(epochs=2, batch_size=256, patience=10)
    n_train = len(windows) - max(1, round(len(windows) * config.val_fraction))
    checkpoint_dir = Path(tempfile.mkdtemp())

    def full():
        pretrain_encoder(windows, config, device, 0, checkpoint=checkpoint_dir / "resume.pt", fingerprint="bench")

    def bare():
        torch.manual_seed(0)
        model = MaskedAutoencoder(windows.shape[2]).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
        generator = torch.Generator().manual_seed(0)
        x = torch.from_numpy(windows[:n_train])
        for _ in range(config.epochs):
            for begin in range(0, n_train, config.batch_size):
                batch = x[begin: begin + config.batch_size]
                mask = make_mask(len(batch), batch.shape[1], "patch", 0.15, 7, generator)
                batch, mask = batch.to(device), mask.to(device)
                loss = masked_mse(model(batch, mask), batch, mask)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

    full_s, bare_s = _interleaved(full, bare, repeats)
    seen = n_train * config.epochs
    return {"full_windows_per_s": seen / full_s, "bare_windows_per_s": seen / bare_s, "ratio": full_s / bare_s,
            "target": 1.1}


def bench_precision(windows: np.ndarray, device: torch.device, repeats: int) -> dict:
    """Pretraining (the full profile's batch 512) in fp16 autocast + GradScaler vs fp32, CUDA only."""
    fp32 = PretrainConfig(epochs=2, batch_size=512, patience=10, mixed_precision=False)
    fp16 = dataclasses.replace(fp32, mixed_precision=True)
    results = {}

    def run(config, name):
        results[name] = pretrain_encoder(windows, config, device, 0)

    fp16_s, fp32_s = _interleaved(lambda: run(fp16, "fp16"), lambda: run(fp32, "fp32"), repeats)
    return {"fp16_s": fp16_s, "fp32_s": fp32_s, "speedup": fp32_s / fp16_s,
            "fp16_val_loss": results["fp16"].best_val_loss, "fp32_val_loss": results["fp32"].best_val_loss,
            "precision_recorded": results["fp16"].precision}


def bench_parquet(features: np.ndarray, repeats: int) -> dict:
    """Seconds to decode the pool: `read_windows` vs `np.array(column.to_pylist())` (a loop per row)."""
    path = Path(tempfile.mkdtemp()) / "unlabeled_windows.parquet"
    write_windows(path, {"window_id": [f"u{i}" for i in range(len(features))], "features": features})

    def vectorised():
        read_windows(path, labeled=False)

    def per_row():
        np.array(pq.read_table(path)["features"].to_pylist(), dtype=np.float32)

    fast, slow = _interleaved(vectorised, per_row, repeats)
    return {"n_windows": len(features), "read_windows_s": fast, "per_row_s": slow, "speedup": slow / fast}


def bench_predict(raw: np.ndarray, device: torch.device, repeats: int) -> dict:
    """Seconds for `moola predict`'s scoring of raw windows by a two-member calibrated ensemble at the
    full profile's size, vs one member's bare forward pass over the same windows."""
    from moola.deploy.model import Deployed, Member
    from moola.training.classifier import predict_proba

    config = PretrainConfig()
    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = EnhancedSimpleLSTM(raw.shape[2], 2, config.hidden_size, config.num_layers).to(device).eval()
        knots = np.linspace(0, 1, 20)
        members.append(Member(f"m{seed}", model, [(knots, knots ** 2), (knots, np.sqrt(knots))]))
    deployed = Deployed("ensemble", members, ["a", "b"], {"shared_channels": True, "window_shape": list(raw.shape[1:])})
    windows = normalize_windows(raw)

    def ensemble():
        deployed.predict_proba(raw, device)

    def one_member():
        predict_proba(members[0].model, windows, device, batch_size=1024)

    full, bare = _interleaved(ensemble, one_member, repeats)
    return {"n_windows": len(raw), "ensemble_s": full, "one_member_forward_s": bare, "ratio": full / bare,
            "windows_per_s": len(raw) / full}


def bench_pretrain_ddp(raw: np.ndarray, device: torch.device, repeats: int, epochs: int = 2) -> dict:
    """Pretraining on torchrun with 1 vs 2 processes: training windows/s (the ranks' own clock, start-up
    excluded) and wall seconds of the whole launch, each the median of `repeats` interleaved runs.

    The global batch (256) is the same, so both compute the same thing; on CPU one process uses
    every core (torch's threads) and two get one thread each (torchrun's OMP_NUM_THREADS=1)."""
    folder = Path(tempfile.mkdtemp())
    pool = write_pool(folder / "pool.npy", raw, np.arange(len(raw)), normalize_windows)
    config = PretrainConfig(epochs=epochs, batch_size=256, patience=epochs + 1)
    measured = {1: [], 2: []}

    def launch_on(nproc: int):
        entry, resume = folder / f"encoder_{nproc}.pt", folder / f"encoder_{nproc}.resume.pt"
        entry.unlink(missing_ok=True)
        resume.unlink(missing_ok=True)
        job = {"pool": str(pool), "config": dataclasses.asdict(config), "seed": 0, "fingerprint": "bench",
               "checkpoint": str(resume), "entry": str(entry), "metadata": {}, "device": device.type,
               "deterministic": True}
        started = time.perf_counter()
        launch.run(job, nproc, folder / f"job_{nproc}.json", folder / f"torchrun_{nproc}.log")
        wall = time.perf_counter() - started
        measured[nproc].append((load_checkpoint(entry)[1]["throughput"]["windows_per_s"], wall))

    for _ in range(repeats):
        for nproc in (1, 2):
            launch_on(nproc)
    one, two = ({"windows_per_s": statistics.median(w for w, _ in runs), "wall_s": statistics.median(s for _, s in runs)}
                for runs in (measured[1], measured[2]))
    return {"n_windows": len(raw), "epochs": epochs, "global_batch": config.batch_size, "one_process": one,
            "two_processes": two, "speedup": two["windows_per_s"] / one["windows_per_s"],
            "wall_ratio": one["wall_s"] / two["wall_s"], "cpu_threads": torch.get_num_threads()}


def report_pretrain_ddp(numbers: dict) -> str:
    one, two = numbers["one_process"], numbers["two_processes"]
    return (f"(f) pretraining on torchrun, {numbers['n_windows']} windows, global batch {numbers['global_batch']}, "
            f"{numbers['epochs']} epochs: 1 process {one['windows_per_s']:.0f} windows/s ({one['wall_s']:.1f} s with "
            f"start-up) vs 2 processes {two['windows_per_s']:.0f} windows/s ({two['wall_s']:.1f} s) -> "
            f"{numbers['speedup']:.2f}x the throughput, {numbers['wall_ratio']:.2f}x faster end to end")


def report_fits_together(n: dict) -> str:
    return (f"(g) {n['fits']} fits of a gate: before (this process, {n['threads']} threads) {n['before_s']:.1f} s, "
            f"one at a time on one thread {n['one_thread_s']:.1f} s, together in {n['workers']} workers "
            f"{n['together_s']:.1f} s -> {n['speedup']:.2f}x faster than before (starting the workers with two "
            f"fits: {n['startup_s']:.1f} s, once a session); per optimizer step {n['before_step_ms']:.1f} / {n['one_thread_step_ms']:.1f} / "
            f"{n['together_step_ms']:.1f} ms against a bare one-thread step of {n['bare_step_ms']:.1f} ms "
            f"(together {n['together_vs_bare']:.2f}x bare)")


def bench_labels(n_seeds: int, json_path: str | None, plot: str | None) -> int:
    """label-next's strategy against random picks at +20/+50/+100 labels (`moola.labeling.simulate`)."""
    from moola.labeling.simulate import forecast_lines, format_table, plot_summary, simulate, summarise

    started = time.monotonic()
    rows = simulate(seeds=tuple(range(101, 101 + n_seeds)))
    summary = summarise(rows)
    print(format_table(summary))
    print("\n".join(forecast_lines(summary)))
    print(f"({n_seeds} seeds, {time.monotonic() - started:.0f} s)")
    if plot:
        plot_summary(summary, Path(plot))
        print(f"plot written to {plot}")
    if json_path:
        Path(json_path).write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moola.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pool", type=int, default=2048, help="windows for the pretraining comparison")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write every number to FILE")
    parser.add_argument("--fit-workers", type=int, default=0, metavar="N",
                        help="(g): worker processes for the fits together (0 = auto, as runtime.fit_workers)")
    parser.add_argument("--pretrain-ddp", action="store_true",
                        help="only (f): pretraining on torchrun with 1 vs 2 processes (gloo on CPU, nccl on 2 GPUs)")
    parser.add_argument("--labels", action="store_true",
                        help="only: the labeling simulation (label-next's strategy vs random picks, an oracle on the "
                             "demo; docs/labeling.md), ~2 minutes a seed on 2 cores")
    parser.add_argument("--seeds", type=int, default=5,
                        help="--labels: demo seeds 101, 102, … (17-19 were used to design the strategies)")
    parser.add_argument("--plot", default=None, metavar="PNG", help="--labels: also draw the table as a plot")
    args = parser.parse_args(argv)
    if args.labels:
        return bench_labels(args.seeds, args.json, args.plot)
    device = torch.device(args.device)
    tables = generate(seed=17, n_unlabeled=N_UNLABELED)
    if args.pretrain_ddp:
        if device.type == "cuda" and torch.cuda.device_count() < 2:
            print(f"(f) needs 2 CUDA devices, found {torch.cuda.device_count()}: run it with --device cpu, or on a multi-GPU pod")
            return 2
        print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, repeats {args.repeats}")
        numbers = bench_pretrain_ddp(tables["unlabeled"]["features"][: args.pool], device, args.repeats)
        print(report_pretrain_ddp(numbers))
        if args.json:
            Path(args.json).write_text(json.dumps({"device": str(device), "torch": torch.__version__,
                                                   "pretrain_ddp": numbers}, indent=2))
        return 0
    labeled = normalize_windows(tables["labeled"]["features"])
    y = (np.array(tables["labeled"]["label"]) == "retracement").astype(np.int64)
    pool = tables["unlabeled"]["features"]
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, repeats {args.repeats}")
    finetune = bench_finetune(labeled[:78], y[:78], device, args.repeats)
    print(f"(a) fine-tune step: all techniques {finetune['full_step_ms']:.1f} ms vs bare "
          f"{finetune['bare_step_ms']:.1f} ms -> {finetune['ratio']:.2f}x (target <= {finetune['target']}x)")
    pretrain = bench_pretrain(normalize_windows(pool[: args.pool]), device, args.repeats)
    print(f"(b) pretraining: {pretrain['full_windows_per_s']:.0f} windows/s vs bare loop "
          f"{pretrain['bare_windows_per_s']:.0f} windows/s -> {pretrain['ratio']:.2f}x time (target <= {pretrain['target']}x)")
    parquet = bench_parquet(pool, args.repeats)
    print(f"(c) decode {parquet['n_windows']} windows: read_windows {parquet['read_windows_s']:.3f} s vs per-row "
          f"{parquet['per_row_s']:.3f} s -> {parquet['speedup']:.1f}x faster")
    scoring = bench_predict(pool[:10_000], device, args.repeats)
    print(f"(e) predict {scoring['n_windows']} windows: 2-member calibrated ensemble {scoring['ensemble_s']:.2f} s "
          f"({scoring['windows_per_s']:.0f} windows/s) vs one member's forward pass {scoring['one_member_forward_s']:.2f} s "
          f"-> {scoring['ratio']:.2f}x")
    numbers = {"device": str(device), "torch": torch.__version__, "repeats": args.repeats,
               "finetune": finetune, "pretrain": pretrain, "parquet": parquet, "predict": scoring}
    together = bench_fits_together(labeled[:78], y[:78], device, args.repeats, workers=args.fit_workers)
    numbers["fits_together"] = together
    print(report_fits_together(together))
    if device.type == "cuda":
        precision = bench_precision(normalize_windows(pool[: args.pool]), device, args.repeats)
        numbers["precision"] = precision
        print(f"(d) pretraining fp16 autocast + GradScaler {precision['fp16_s']:.2f} s vs fp32 "
              f"{precision['fp32_s']:.2f} s -> {precision['speedup']:.2f}x faster; best val loss "
              f"{precision['fp16_val_loss']:.4f} vs {precision['fp32_val_loss']:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

