"""The embedded demo datasets by layout name: `--demo` (the seed's tidy layout) and
`--demo user-layout` (the user's own files: no timestamps, spans, a pool holding the labeled windows)."""

from __future__ import annotations

from pathlib import Path

from moola.data import demo, demo_user
from moola.data.dataset import SPLIT

LAYOUTS = ("seed", demo_user.LAYOUT)
# What a layout's data declare about themselves, as `--set` overrides (applied before the user's own).
DECLARED = {"seed": (), demo_user.LAYOUT: ("data.prediction_bars={},{}".format(*demo_user.PREDICTION_BARS),)}


def check_layout(layout: str) -> str:
    """`layout` if it names a demo, else a `ValueError` naming the choices."""
    if layout not in LAYOUTS:
        raise ValueError(f"--demo: expected one of {', '.join(LAYOUTS)} (or --demo alone for seed), found {layout!r}; "
                         "put paths before --demo or write --demo=LAYOUT")
    return layout


def write(layout: str, out_dir: Path, seed: int = 17) -> Path:
    """Write the `layout` demo under `out_dir`; returns `out_dir`."""
    module = demo_user if check_layout(layout) == demo_user.LAYOUT else demo
    return module.write_demo(Path(out_dir), seed=seed)


def cached_demo(cache_root: Path, seed: int = 17, layout: str = "seed") -> Path:
    """The data root of the `layout` demo under `cache_root`, generated once per generator version and seed."""
    if check_layout(layout) == demo_user.LAYOUT:
        root = Path(cache_root) / f"demo-user-{demo_user.version()}-seed{seed}"
    else:
        root = Path(cache_root) / f"demo-{demo.generator_version()}-seed{seed}"
    if not (root / SPLIT).is_file():  # the split is written last: its presence means complete
        write(layout, root, seed)
    return root
