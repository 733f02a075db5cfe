"""PAC-Bayes flatness (Jiang et al. 2020, "Fantastic Generalization Measures and Where to Find Them", their
"pacbayes.flatness"; from the PAC-Bayes bound of Dziugaite & Roy 2017):

    measure.pacbayes_flatness = 1 / sigma'^2,   sigma' = max sigma with E_{u ~ N(0, sigma^2 I)}[L(w + u)] - L(w) <= 0.1

L the train error, the expectation a Monte-Carlo mean over flatness.samples draws, sigma' found by bisection
(study.measures.flatness_search, where the bound on its cost is stated). flatness.sigma records sigma' itself.
"""

from __future__ import annotations

from study.measures import MeasureContext, MeasureOutput, register
from study.measures.flatness_search import flatness_scale


@register("pacbayes_flatness", version=2,  # 2: the error on a random subset of at most 512 points (was the first 2048)
          record={"measure.pacbayes_flatness": "float", "flatness.sigma": "float", "flatness.samples": "int",
                  "flatness.points": "int"})
def measure(ctx: MeasureContext) -> MeasureOutput:
    found = flatness_scale(ctx.model, ctx.data.x_train, ctx.data.y_train, ctx.cfg.seed_for("flatness"),
                           magnitude=False)
    return MeasureOutput(record={"measure.pacbayes_flatness": found.flatness, "flatness.sigma": found.sigma,
                                 "flatness.samples": found.samples, "flatness.points": found.points})
