"""benchmarks/gpu_check.py's paper_cost section: training steps timed per architecture on the device, and from
them what the `paper` preset's nets would cost in device-hours."""

from __future__ import annotations

import time
from typing import Any

from _common import synchronize

PAPER_NETS = 335_671  # nets in the reference study (Novak et al. 2018)


def paper_architectures(small: bool) -> list[tuple[int, int, int]]:
    """(width, depth, batch) whose step time is measured: the paper's widths 2^k and depths, thinned."""
    if small:
        return [(16, 2, 128), (64, 3, 128)]
    return [(w, d, b) for w in (16, 256, 1024, 4096, 16384) for d in (2, 5, 17) for b in (128, 512)
            if w * w * (d - 1) <= 16384 * 16384 * 4]


def step_seconds(device: str, width: int, depth: int, batch: int, steps: int) -> float:
    """Seconds of one SGD step (forward, backward, update) of a width x depth net on 784-d inputs, batch `batch`."""
    import torch

    from study.config import TrialConfig
    from study.models import build_model

    model = build_model(TrialConfig(dataset="fashion_mnist", width=width, depth=depth), 784, 10, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, 784, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    for step in range(steps + 3):
        if step == 3:
            synchronize(device)
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def paper_cost_section(device: str, full: dict[str, Any], small: bool) -> dict[str, Any]:
    """GPU-hours of the paper preset: steps to fit (the full-data trial's, capped at 2^19) x the step time of
    each sampled config's architecture (measured, nearest measured width/depth), summed over a sample of the
    paper preset's configs and scaled to PAPER_NETS; measures priced as the full-data trial's share."""
    from sweeps.presets import get_preset
    from sweeps.sampling import sample

    archs = paper_architectures(small)
    timed = {a: step_seconds(device, *a, steps=5 if small else 30) for a in archs}
    fit_steps = int(full.get("train.steps") or 0) or 2 ** 19
    train_s, total_s = full.get("time.train_s") or 0.0, full.get("time.total_s") or 0.0
    measure_factor = total_s / train_s if train_s else 1.0
    drawn = [t.config for t in sample(get_preset("paper"), {}, 0, 40 if small else 2000).trials]

    def nearest(cfg) -> float:
        key = min(archs, key=lambda a: (abs(a[0] - cfg.width) / max(a[0], cfg.width), abs(a[1] - cfg.depth), abs(a[2] - cfg.batch_size)))
        scale = (cfg.width ** 2 * max(1, cfg.depth - 1) + 784 * cfg.width) / (key[0] ** 2 * max(1, key[1] - 1) + 784 * key[0])
        return timed[key] * max(1.0, scale)  # bigger than measured: at least proportional to its parameters

    per_net = [min(fit_steps, cfg.max_steps) * nearest(cfg) * measure_factor for cfg in drawn]
    bound = [cfg.max_steps * nearest(cfg) * measure_factor for cfg in drawn]  # no net stops early: the upper end
    by_width: dict[int, list[float]] = {}
    for cfg, seconds in zip(drawn, per_net):
        by_width.setdefault(cfg.width, []).append(seconds)
    mean = sum(per_net) / len(per_net)
    return {"step_s": {f"{w}x{d} b{b}": round(s, 6) for (w, d, b), s in timed.items()},
            "steps_to_fit": fit_steps, "measure_factor": round(measure_factor, 3), "sampled_configs": len(drawn),
            "mean_net_hours": round(mean / 3600, 4), "paper_gpu_hours": round(mean * PAPER_NETS / 3600, 1),
            "paper_gpu_hours_at_max_steps": round(sum(bound) / len(bound) * PAPER_NETS / 3600, 1),
            "by_width_mean_hours": {w: round(sum(v) / len(v) / 3600, 4) for w, v in sorted(by_width.items())},
            "assumptions": "paper_gpu_hours: every net takes the full-data trial's steps to fit (capped at its "
                           "max_steps; random labels and CIFAR take longer, so this is a low end); "
                           "paper_gpu_hours_at_max_steps: every net runs all its steps (the high end); one net a card "
                           "at a time; SGD steps on 784-d inputs; widths/depths between the measured ones scaled by "
                           "parameter count; measures priced at the full-data trial's share"}
