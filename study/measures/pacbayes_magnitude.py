"""Magnitude-aware PAC-Bayes flatness (Jiang et al. 2020, "Fantastic Generalization Measures and Where to Find
Them", their "pacbayes.mag.flatness"): the perturbation of each parameter scales with its magnitude,

    measure.pacbayes_mag_flatness = 1 / alpha'^2,
    alpha' = max alpha with E_u[L(w + u)] - L(w) <= 0.1,   u_i ~ N(0, alpha^2 w_i^2 + 1e-6)

(a floor eps = 1e-3 on each coordinate's scale), L the train error; the same Monte-Carlo draws and bisection
as the plain measure (study.measures.flatness_search). flatness.mag_sigma records alpha' itself.
"""

from __future__ import annotations

from study.measures import MeasureContext, MeasureOutput, register
from study.measures.flatness_search import flatness_scale


@register("pacbayes_magnitude", version=2,  # 2: as pacbayes_flatness's
          record={"measure.pacbayes_mag_flatness": "float", "flatness.mag_sigma": "float"})
def measure(ctx: MeasureContext) -> MeasureOutput:
    found = flatness_scale(ctx.model, ctx.data.x_train, ctx.data.y_train, ctx.cfg.seed_for("flatness"),
                           magnitude=True)
    return MeasureOutput(record={"measure.pacbayes_mag_flatness": found.flatness, "flatness.mag_sigma": found.sigma})
