"""Case ``scaling``: Newton step time against the largest block size N, for ours and for the
release's approach (docs/method.md §6), with fitted log-log exponents.

At a fixed batch B, our factor-form Fisher with Woodbury costs ``O(N·B²)`` per block; the
release's dense ``F`` plus ``torch.inverse`` costs ``O(N³)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from qnewton.bench.fixtures import classical_scheduler, mlp, ours_step, random_data
from qnewton.bench.release import release_block_direction, release_per_sample_grads
from qnewton.bench.settings import Settings
from qnewton.bench.stats import fit_exponent, summarize, time_interleaved
from qnewton.solvers import MachineRates


def case_scaling(s: Settings, rates: MachineRates, seed: int) -> dict[str, Any]:
    """Fitted exponent of our step time against N (N >= 500 where there are two such points),
    compared with the release's."""
    eps = 1e-3
    scheduler = classical_scheduler(rates, seed)
    points = []
    timings: dict[str, Any] = {}
    for h in s.scaling_hidden:
        model = mlp(64, h, 10, torch.float64, seed)
        x, y = random_data(s.scaling_batch, 64, 10, torch.float64, seed)
        n_max = max(p.numel() for p in model.parameters())

        def ours(model: nn.Module = model, x: torch.Tensor = x, y: torch.Tensor = y) -> None:
            ours_step(model, x, y, scheduler, eps)

        def release(model: nn.Module = model, x: torch.Tensor = x, y: torch.Tensor = y) -> None:
            for _, j in release_per_sample_grads(model, x, y):
                release_block_direction(j, eps)

        (ours_t, rel_t), _ = time_interleaved([ours, release], s.repeats, s.warmup)
        points.append({"hidden": h, "n_max": n_max,
                       "n_total": sum(p.numel() for p in model.parameters()),
                       "ours": summarize(ours_t), "release": summarize(rel_t)})
        timings[f"h{h}"] = {"ours": ours_t, "release": rel_t}
    xs = [p["n_max"] for p in points]
    fits = {}
    for who in ("ours", "release"):
        ys = [p[who]["median"] for p in points]
        tail = [(x_, y_) for x_, y_ in zip(xs, ys, strict=True) if x_ >= 500]
        fits[who] = {"exponent_all": fit_exponent(xs, ys)[0]}
        if len(tail) >= 2:
            fits[who]["exponent_n_ge_500"] = fit_exponent(*zip(*tail, strict=True))[0]
    key = "exponent_n_ge_500" if "exponent_n_ge_500" in fits["ours"] else "exponent_all"
    ours_p, rel_p = fits["ours"][key], fits["release"][key]
    # Round r's figures: the same fit on every size's r-th interleaved timing.
    fitted = [p for p in points if p["n_max"] >= 500 or key == "exponent_all"]
    per_round = []
    for r in range(s.repeats):
        per_round.append([
            fit_exponent([p["n_max"] for p in fitted],
                         [timings[f"h{p['hidden']}"][who][r] for p in fitted])[0]
            for who in ("ours", "release")
        ])
    for who, i in (("ours", 0), ("release", 1)):
        fits[who][f"{key}_per_round"] = [pair[i] for pair in per_round]
    return {
        "name": "scaling",
        "measured": ours_p,
        "unit": f"fitted exponent of step time vs largest block N ({key})",
        "baseline": f"release approach exponent {rel_p:.2f} (dense F + inverse: → 3)",
        "target": "<= 1.5 (Woodbury: O(N·B²) at fixed batch B) and below the release's",
        "met": ours_p <= 1.5 and ours_p < rel_p,
        "per_repeat": {
            "measured": [o for o, _ in per_round],
            "met": [o <= 1.5 and o < r for o, r in per_round],
            "what": "exponents fitted to each interleaved round's timings (ours; release in fits)",
        },
        "timings": timings,
        "fits": fits,
        "points": points,
        "model": f"MLP 64->h->h->10 float64, batch {s.scaling_batch}, "
        f"h in {list(s.scaling_hidden)}",
    }
