"""The search behind the PAC-Bayes flatness measures (Jiang et al. 2020, "Fantastic Generalization Measures and
Where to Find Them", section on PAC-Bayesian measures; Dziugaite & Roy 2017 for the bound they come from).

For trained parameters w, train error L (the 0-1 loss over the training points, labels as trained on) and
perturbations u_k = s(w, sigma) * z_k with z_k ~ N(0, I), the flatness scale is

    sigma' = the largest sigma with  (1/M) sum_k L(w + u_k) - L(w) <= DEVIATION

found by bisection over log sigma in [SIGMA_LO, SIGMA_HI]. s(w, sigma) = sigma for the plain measure and
sqrt(sigma^2 w_i^2 + MAGNITUDE_EPS^2) per coordinate for the magnitude-aware one. The M draws z_k are the same
at every sigma (common random numbers: the Monte-Carlo mean is then a deterministic function of sigma, and
the bisection cannot be misled by fresh noise at each step), drawn on the CPU from the trial's own seed so that
the same config gives the same number on any device.

Cost, bounded: STEPS evaluations of the mean, each at most M forward passes of at most MAX_POINTS training
points (SAMPLE_CHUNK perturbed nets at once through torch.func.vmap; an evaluation stops as soon as the draws
summed so far put the mean above the bound, which the rest cannot undo); nothing else. With the defaults, at
most 10 x 8 = 80 forwards of <= 512 points per measure (a train error of 0.1 is 51 of them; the Monte-Carlo
mean's standard error there is about 0.005). benchmarks/bench_trial.py times each measure (RESULTS.md). A
sigma that never satisfies the bound returns SIGMA_LO, one that always does returns SIGMA_HI (the search's
edges; 1/sigma'^2 is then censored there, never infinite).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.func import functional_call, vmap

DEVIATION = 0.1  # the allowed rise of the expected train error (Jiang et al.'s target deviation)
SAMPLES = 8  # Monte-Carlo draws M of the perturbation
STEPS = 10  # bisection steps over log sigma: the bracket shrinks by 2^-STEPS in log space (x1.014 here)
SIGMA_LO, SIGMA_HI = 1e-5, 10.0
MAX_POINTS = 512  # training points the error is estimated on (a seeded random subset; all of a smaller train set)
MAGNITUDE_EPS = 1e-3  # the magnitude-aware measure's floor on each coordinate's noise scale
SAMPLE_CHUNK = 2  # draws evaluated at once (vmap), so that a sigma far too large is refused after the first ones
SAMPLE_CHUNK_FLOATS = 2 ** 26  # perturbed parameter sets held at once: at most this many floats (256 MiB)


@dataclass(frozen=True)
class Flatness:
    sigma: float  # sigma' of the module docstring
    samples: int  # M
    points: int  # training points the error was estimated on
    base_error: float  # L(w)

    @property
    def flatness(self) -> float:
        """1 / sigma'^2: large for a sharp minimum (Jiang et al. rank nets by it)."""
        return 1.0 / self.sigma ** 2


def noise_draws(shapes: dict[str, torch.Size], seed: int, samples: int) -> dict[str, torch.Tensor]:
    """z_k ~ N(0, I) for k < samples, one tensor [samples, *shape] per parameter, drawn on the CPU."""
    gen = torch.Generator().manual_seed(seed)
    return {name: torch.randn((samples, *shape), generator=gen) for name, shape in shapes.items()}


def perturbed_error(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, params: dict[str, torch.Tensor],
                    noise: dict[str, torch.Tensor], scale, above: float = math.inf) -> float:
    """(1/M) sum_k L(w + scale(w) * z_k): the mean train error of the M perturbed nets, draws taken
    SAMPLE_CHUNK at a time; it stops early, with a partial sum (then already > `above`), once the part summed
    so far exceeds `above`: the errors are >= 0, so the full mean would too (the search's early out)."""
    samples = next(iter(noise.values())).shape[0]
    n_params = sum(p.numel() for p in params.values())
    per_chunk = max(1, min(SAMPLE_CHUNK, SAMPLE_CHUNK_FLOATS // max(n_params, 1)))

    def errors(p):
        return (functional_call(model, p, (x,)).argmax(dim=1) != y).float().mean()
    total = 0.0
    for lo in range(0, samples, per_chunk):
        stacked = {name: w + scale(w) * noise[name][lo:lo + per_chunk] for name, w in params.items()}
        with torch.no_grad():
            total += float(vmap(errors)(stacked).sum())
        if total / samples > above:
            break
    return total / samples


def estimation_points(n: int, seed: int) -> torch.Tensor | None:
    """The training points the error is estimated on: None (all) for n <= MAX_POINTS, else MAX_POINTS of them
    drawn without replacement from `seed`, in order (a data set's own order may be sorted by class)."""
    if n <= MAX_POINTS:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:MAX_POINTS].sort().values


def flatness_scale(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int, magnitude: bool,
                   samples: int = SAMPLES, steps: int = STEPS) -> Flatness:
    """sigma' of the module docstring for `model` on (x, y): plain (magnitude=False) or magnitude-aware."""
    keep = estimation_points(x.shape[0], seed)
    if keep is not None:
        x, y = x[keep.to(x.device)], y[keep.to(y.device)]
    params = {name: value.detach() for name, value in model.named_parameters()}
    noise = {name: z.to(x.device) for name, z in
             noise_draws({n: p.shape for n, p in params.items()}, seed, samples).items()}
    with torch.no_grad():
        base = float((model(x).argmax(dim=1) != y).float().mean())
    lo, hi = math.log(SIGMA_LO), math.log(SIGMA_HI)
    for _ in range(steps):
        mid = (lo + hi) / 2
        sigma = math.exp(mid)
        if magnitude:
            def scale(w, s=sigma):
                return torch.sqrt((s * w) ** 2 + MAGNITUDE_EPS ** 2)
        else:
            def scale(w, s=sigma):
                return torch.full_like(w, s)
        if perturbed_error(model, x, y, params, noise, scale, above=base + DEVIATION) <= base + DEVIATION:
            lo = mid
        else:
            hi = mid
    # the bracket's lower end satisfies the bound (or is the search's edge); at the top edge report SIGMA_HI
    sigma = SIGMA_HI if hi == math.log(SIGMA_HI) else math.exp(lo)
    return Flatness(sigma=sigma, samples=samples, points=int(x.shape[0]), base_error=base)
