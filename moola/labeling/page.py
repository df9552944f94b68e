"""The labeling page: one self-contained HTML file (no server, no network: the windows' bars are in
the page), which works copied from the pod to a laptop. Its script is `page.html` beside this file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from moola.labeling.folder import Folder
from moola.labeling.propose import Proposal

COLORS = ("#1c71d8", "#e66100", "#9141ac", "#2ec27e", "#c64600")


def default_span(folder: Folder) -> list | None:
    """The span every labeled row has, when they all have one and the same (the seed's layout labels
    whole prediction windows): the page then needs only the class key."""
    spans = folder.labeled.expansion
    if spans is None or len(np.unique(spans, axis=0)) != 1:
        return None
    return [int(v) for v in spans[0]]


def page_data(folder: Folder, proposal: Proposal, data_arg: str) -> dict:
    pool = folder.pool
    n_bars = pool.features.shape[1]
    bars = tuple(folder.config.prediction_bars) or default_span(folder) or (0, n_bars - 1)  # where spans lie
    ids = [str(pool.window_ids[row]) for row in proposal.pool_rows]
    windows = []
    for k, row in enumerate(proposal.pool_rows):
        if proposal.proba is not None:
            p = ", ".join(f"p({c}) {v:.2f}" for c, v in zip(proposal.classes, proposal.proba[k]))
            note = f"the model: {p}, margin {proposal.margins[k]:.2f}"
        else:
            note = f"chosen by {proposal.strategy}" + (" (diversity alone)" if proposal.strategy != "random" else "")
        windows.append({"id": ids[k], "bars": np.round(pool.features[row].astype(np.float64), 6).tolist(),
                        "note": note})
    proposal_id = hashlib.sha256(json.dumps([str(folder.root), ids, proposal.record.get("seed")]).encode()).hexdigest()[:12]
    about = (f"{len(ids)} pool windows proposed by {proposal.strategy} (python -m moola label-next) from "
             f"{proposal.record['n_candidates']} that share no bars with the {proposal.record['n_labeled']} labeled rows. "
             f"Ranked by: {proposal.record.get('model') or 'chance'}. Shaded: bars {bars[0]}-{bars[1]}, where spans lie.")
    return {"proposal_id": proposal_id, "classes": list(folder.classes), "colors": list(COLORS),
            "prediction_bars": [int(bars[0]), int(bars[1])], "default_span": default_span(folder),
            "has_spans": folder.labeled.expansion is not None, "windows": windows, "about": about,
            "next_command": f"python -m moola add-labels labels.csv {data_arg}"}


def write_page(path: Path, data: dict) -> Path:
    template = (Path(__file__).with_name("page.html")).read_text()
    payload = json.dumps(data).replace("</", "<\\/")  # never closes the script element
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(template.replace("/*DATA*/null", payload, 1))
    return path
