"""What a classifier reads: the window up to the decision point, normalised, with its labeled span marked.

- `visible_bars` V (`data.visible_bars`; 0 = the whole window, as the seed): a classifier reads
  bars 0..V-1 only, normalised on those bars alone (statistics over the whole window would carry
  the later bars' range into the earlier ones). The user's windows hold 30 "future outcome" bars
  after the prediction window (75-104) that a live prediction would not have: V = 75 cuts them.
- `span_bars` L (`data.span_bars`; 0 = off): a span-aligned view. A classifier reads the L bars
  that end at each row's labeled span's last bar (bars `end - L + 1 .. end`), so every row's
  pattern ends at the same position and the decision point is the end of the span: no bar after
  it is read. It replaces `visible_bars` (one decision point or the other).
- `span_channel` (`data.span_input`): one more channel, 1 on the labeled span's bars and 0
  elsewhere, so two rows of one window on different spans are two inputs, not one input with two
  answers. Pretraining never sees it (the pool has no spans); the encoder reads the price channels.

Pretraining, the pool filter and the leakage checks read the whole raw window; only classifiers
(and the linear probe, which scores labels) read these inputs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

from moola.data.normalize import normalize_windows


@dataclass(frozen=True)
class InputSpec:
    """How raw windows `(n, T, C)` become classifier inputs `(n, V, C + span_channel)`."""

    shared_channels: bool = True  # OHLC: one mean/std per window over all four channels
    visible_bars: int = 0  # bars 0..V-1 are read; 0 = every bar
    span_channel: bool = False  # append the labeled span as a 0/1 channel
    span_bars: int = 0  # read the L bars ending at the span's last bar; 0 = off

    @classmethod
    def from_record(cls, record: dict) -> InputSpec:
        """From a checkpoint's `input` metadata (files written before these settings read whole windows)."""
        return cls(bool(record.get("shared_channels", True)), int(record.get("visible_bars") or 0),
                   bool(record.get("span_channel", False)), int(record.get("span_bars") or 0))

    def record(self) -> dict:
        return {"shared_channels": self.shared_channels, "visible_bars": self.visible_bars,
                "span_channel": self.span_channel, "span_bars": self.span_bars}

    @property
    def needs_spans(self) -> bool:
        return self.span_channel or self.span_bars > 0

    def bars(self, n_bars: int) -> int:
        """Bars a classifier reads of an `n_bars` window (the view's length under `span_bars`)."""
        if self.span_bars:
            return self.span_bars
        return min(self.visible_bars, n_bars) if self.visible_bars else n_bars


AUTO = -1  # data.span_bars: the span-aligned view when the labeled spans vary (`resolve_spec`)
MIN_VIEW = 9  # bars: MiniRocket's shortest series


def resolve_spec(data, expansion: np.ndarray | None) -> InputSpec:
    """The classifiers' inputs for a `DataConfig` and the labeled file's spans `(N, 2)` (or None).

    Spans that vary between rows carry information a window alone does not (two rows of one
    window, two spans, two labels): then the span channel is on (`data.span_input`, default true)
    and, with `data.span_bars` at its default `AUTO` and no `data.visible_bars`, the span-aligned
    view reads the `first + 1` bars ending at each span, `first` the first of the declared
    `data.prediction_bars` (31 on the user's layout, 30-74: every span ends at bar 30 or later;
    a new row never changes it), else the earliest span end; when every span fits in it. Spans that are all equal (the
    seed's demo: 30-74 in every row) or absent change nothing: whole windows, no channel. The
    measured effect on the user-layout demo is in docs/gates.md.
    """
    spec = InputSpec(data.channels == "ohlc", int(data.visible_bars), bool(data.span_input), max(int(data.span_bars), 0))
    varying = expansion is not None and len(np.unique(np.asarray(expansion), axis=0)) > 1
    if not varying:
        return replace(spec, span_channel=False)
    if data.span_bars == AUTO and not data.visible_bars:
        start, end = np.asarray(expansion)[:, 0], np.asarray(expansion)[:, 1]
        first = data.prediction_bars[0] if data.prediction_bars else int(end.min())
        view = min(int(first), int(end.min())) + 1
        if view >= max(MIN_VIEW, int((end - start).max()) + 1):
            spec = replace(spec, span_bars=view)
    return spec


def span_mask(spans: np.ndarray, n_bars: int) -> np.ndarray:
    """`(n, 2)` inclusive `(start, end)` bar spans -> `(n, n_bars)` float32, 1 on the span's bars."""
    spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    bars = np.arange(n_bars)[None, :]  # (1, T)
    return ((bars >= spans[:, :1]) & (bars <= spans[:, 1:])).astype(np.float32)


def model_inputs(raw: np.ndarray, spec: InputSpec, spans: np.ndarray | None = None) -> np.ndarray:
    """Raw windows `(n, T, C)` -> classifier inputs `(n, V, C)`, or `(n, V, C + 1)` with the span channel.

    `spans` `(n, 2)` (`expansion_start`, `expansion_end`): required when `spec.span_channel`.
    """
    raw = np.asarray(raw)
    if raw.ndim != 3:
        raise ValueError(f"expected windows of shape (N, T, C), found shape {raw.shape}")
    if spec.needs_spans and spans is None:
        setting = "data.span_bars" if spec.span_bars else "data.span_input"
        raise ValueError(f"this model reads the labeled span ({setting}): expected the columns expansion_start and "
                         "expansion_end (the pattern's first and last bar) beside the windows, found none; add "
                         "them, or use a model trained with --set data.span_bars=0 --set data.span_input=false")
    bars, marks = read_bars(raw, spec, spans)
    inputs = normalize_windows(bars, shared_channels=spec.shared_channels)  # (n, V, C)
    if not spec.span_channel:
        return inputs
    return np.concatenate([inputs, marks[..., None]], axis=2)  # (n, V, C + 1)


def read_bars(raw: np.ndarray, spec: InputSpec, spans: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The raw bars a classifier reads `(n, V, C)` and their span marks `(n, V)` (None without spans)."""
    marks = span_mask(spans, raw.shape[1]) if spec.needs_spans else None  # (n, T)
    if spec.span_bars:
        raw, marks = span_view(raw, marks, np.asarray(spans)[:, 1], spec.span_bars)
    n_bars = spec.bars(raw.shape[1])
    return raw[:, :n_bars], (None if marks is None else marks[:, :n_bars])


def read_hashes(raw: np.ndarray, spec: InputSpec, spans: np.ndarray | None = None) -> list:
    """One hex digest per row of exactly what a classifier reads (raw bars, and the span when read):
    `predict` tells windows a model has seen from new ones by it, whole windows or cut ones alike."""
    bars, marks = read_bars(raw, spec, spans)
    read = np.ascontiguousarray(bars, dtype=np.float32)
    if marks is not None:
        read = np.concatenate([read, marks[..., None].astype(np.float32)], axis=2)
    return [hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest() for row in read]


def span_view(raw: np.ndarray, marks: np.ndarray, ends: np.ndarray, n_bars: int) -> tuple[np.ndarray, np.ndarray]:
    """The `n_bars` bars ending at each row's `ends` bar: `(n, T, C)`, `(n, T)` -> `(n, L, C)`, `(n, L)`."""
    ends = np.asarray(ends, dtype=np.int64)
    if ((ends < n_bars - 1) | (ends >= raw.shape[1])).any():
        bad = np.flatnonzero((ends < n_bars - 1) | (ends >= raw.shape[1]))
        raise ValueError(f"data.span_bars={n_bars}: expected every span to end at bar {n_bars - 1} or later, inside "
                         f"the window's {raw.shape[1]} bars, found rows {bad[:5].tolist()} ending at bars "
                         f"{ends[bad][:5].tolist()}; lower data.span_bars")
    index = ends[:, None] - n_bars + 1 + np.arange(n_bars)[None, :]  # (n, L) bars of each view
    rows = np.arange(len(raw))[:, None]
    return raw[rows, index], marks[rows, index]
