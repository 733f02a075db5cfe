"""Figure 6: linear regions of the last hidden layer on a 2-D slice through three training points,
before and after training (docs/science.md section 2, last item; Novak et al. 2018).

The slice is the plane x(a, b) = p0 + a (p1 - p0) + b (p2 - p0) through three training points of
different classes (p0 at (0, 0), p1 at (1, 0), p2 at (0, 1); affine, not orthonormal coordinates).
Each grid cell is colored by a hash of the last hidden layer's activation pattern, which unit sits
on which side of which kink of the nonlinearity (for ReLU: z > 0); cells whose pattern differs from
a neighbour's are drawn dark, tracing the region boundaries. Smooth nonlinearities have no kinks:
their pattern is the sign of the pre-activations. The trained net is recomputed from the trial's
config (training is deterministic given the config), so the figure needs the data set on disk.
"""

from __future__ import annotations

import colorsys
import hashlib

import numpy as np
import torch
from matplotlib.figure import Figure

from analysis.figures.style import PANEL_IN, paper_style, save
from study.config import TrialConfig
from study.data import Dataset, load_dataset
from study.models import MLP, build_model

SPAN = (-0.3, 1.3)  # plane coordinates shown, in units of (p1 - p0) and (p2 - p0)


def slice_points(data: Dataset, seed: int) -> tuple[torch.Tensor, list[int]]:
    """Three training points of different (true) classes, the first such in a seeded permutation:
    x [3, d] and their classes. Falls back to any three points if there are fewer than 3 classes."""
    labels = data.y_train_true.cpu().numpy()
    order = np.random.default_rng(seed).permutation(len(labels))
    chosen: list[int] = []
    for i in order:
        if labels[i] not in {labels[j] for j in chosen}:
            chosen.append(int(i))
        if len(chosen) == 3:
            break
    for i in order:  # fewer than three classes present
        if len(chosen) == 3:
            break
        if i not in chosen:
            chosen.append(int(i))
    if len(chosen) < 3:
        raise ValueError(f"a slice needs 3 training points, the trial has {len(labels)}")
    return data.x_train[chosen].cpu().float(), [int(labels[i]) for i in chosen]


def activation_patterns(model: MLP, x: torch.Tensor, chunk: int = 4096) -> np.ndarray:
    """Last hidden layer's activation pattern per row of x, packed into bytes: [n, ceil(units*kinks/8)]."""
    kinks = model.kinks or (0.0,)
    device = next(model.parameters()).device
    packed = []
    with torch.no_grad():
        for start in range(0, len(x), chunk):
            z = model.preactivations(x[start:start + chunk].to(device))[-1]
            bits = torch.cat([z > k for k in kinks], dim=1).cpu().numpy()
            packed.append(np.packbits(bits, axis=1))
    return np.concatenate(packed)


def region_map(model: MLP, points: torch.Tensor, resolution: int, span: tuple[float, float] = SPAN
               ) -> tuple[np.ndarray, np.ndarray]:
    """Over a resolution x resolution grid of the plane through `points` [3, d]: (region id per cell
    [rows = b, cols = a], packed pattern of each region id)."""
    p0, p1, p2 = points
    coords = torch.linspace(span[0], span[1], resolution)
    b, a = torch.meshgrid(coords, coords, indexing="ij")
    x = p0 + a.reshape(-1, 1) * (p1 - p0) + b.reshape(-1, 1) * (p2 - p0)
    patterns = activation_patterns(model, x)
    unique, ids = np.unique(patterns, axis=0, return_inverse=True)
    return ids.reshape(resolution, resolution), unique


def region_colors(ids: np.ndarray, patterns: np.ndarray) -> np.ndarray:
    """RGB image [rows, cols, 3]: a pastel color hashed from each region's pattern, boundaries dark."""
    palette = np.array([colorsys.hsv_to_rgb(_hash_unit(row)[0], 0.25 + 0.4 * _hash_unit(row)[1], 0.97)
                        for row in patterns])
    image = palette[ids]
    image[boundaries(ids)] = (0.15, 0.15, 0.15)
    return image


def _hash_unit(row: np.ndarray) -> tuple[float, float]:
    """Two numbers in [0, 1) from a pattern's bytes: a stable color that neighbours do not share by order."""
    digest = hashlib.blake2b(row.tobytes(), digest_size=8).digest()
    return int.from_bytes(digest[:4], "little") / 2 ** 32, int.from_bytes(digest[4:], "little") / 2 ** 32


def boundaries(ids: np.ndarray) -> np.ndarray:
    """Cells whose region differs from the cell to their right or above (a one-cell-wide boundary)."""
    edge = np.zeros(ids.shape, dtype=bool)
    edge[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    edge[:-1, :] |= ids[:-1, :] != ids[1:, :]
    return edge


def trained_model(cfg: TrialConfig, data_root: str | None = None, device: str = "cpu") -> MLP:
    """The trial's trained net, recomputed by running the trial (deterministic given the config)."""
    from study.trial import run_trial

    result = run_trial(cfg, device=device, data_root=data_root)
    if result.model is None:
        raise RuntimeError(f"trial {cfg.trial_id} failed when recomputed: {result.record.get('error')}")
    return result.model.eval()


@paper_style()
def draw_linear_regions(cfg: TrialConfig, resolution: int = 400, data_root: str | None = None,
                        device: str = "cpu", trained: MLP | None = None) -> Figure:
    """Two panels, before and after training. `trained` skips recomputing the trained net."""
    data = load_dataset(cfg, data_root=data_root)
    points, classes = slice_points(data, cfg.seed_for("figure-slice"))
    initial = build_model(cfg, data.n_features, data.n_classes).eval()
    final = trained if trained is not None else trained_model(cfg, data_root, device)
    fig = Figure(figsize=(2 * PANEL_IN + 0.2, PANEL_IN + 0.3), layout="constrained")
    axes = fig.subplots(1, 2)
    how = "" if initial.kinks else ": sign pattern, no kinks"
    for ax, model, when in zip(axes, (initial, final.cpu()), ("before training", "after training")):
        ids, patterns = region_map(model, points, resolution)
        ax.imshow(region_colors(ids, patterns), origin="lower", extent=(*SPAN, *SPAN), interpolation="nearest")
        ax.scatter([0, 1, 0], [0, 0, 1], marker="o", s=22, c="white", edgecolors="black", linewidths=0.8, zorder=3)
        for (pa, pb), cls, name in zip(((0, 0), (1, 0), (0, 1)), classes, ("$p_0$", "$p_1$", "$p_2$")):
            ax.annotate(f"{name}: class {cls}", (pa, pb), xytext=(4, 4), textcoords="offset points", fontsize=6.5,
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
        ax.set_title(f"{when}: {len(patterns)} regions in view")
        ax.set_xlabel("$a$ (along $p_1 - p_0$)")
        ax.set_ylabel("$b$ (along $p_2 - p_0$)")
    fig.suptitle(f"Linear regions of the last hidden layer ({cfg.nonlinearity}{how}, width {cfg.width}, "
                 f"depth {cfg.depth}, {cfg.dataset})\non the plane through three training points; "
                 f"{resolution}×{resolution} grid", fontsize=7.5)
    return fig


def fig6_linear_regions(cfg: TrialConfig, out_dir: str, resolution: int = 400, data_root: str | None = None,
                        device: str = "cpu", trained: MLP | None = None) -> list[str]:
    """Figure 6: linear regions on a slice through three training points, before and after training.
    Recomputes the trial (unless `trained` is given); raises if its data set is not on disk.
    Writes fig6_linear_regions.{png,pdf}; returns their paths."""
    return save(draw_linear_regions(cfg, resolution, data_root, device, trained), out_dir, "fig6_linear_regions")
