"""Inverse margin 1 / gamma^2 (Jiang et al. 2020, "Fantastic Generalization Measures and Where to Find Them",
their "inverse margin" measure), with gamma the 10th percentile over the training points of the output
margin h_y(x) - max_{j != y} h_j(x) (labels as trained; study.measures.baselines.margins_of, the margin of
measure.margin). NaN when gamma <= 0: the net misclassifies more than a tenth of its training set, and
1 / gamma^2 no longer says how far the points are from the decision boundary.
"""

from __future__ import annotations

import numpy as np

from study.measures import MeasureContext, MeasureOutput, register
from study.measures.baselines import MARGIN_QUANTILE, margins_of


def inverse_margin(gamma: float) -> float:
    """1 / gamma^2, NaN unless gamma > 0."""
    return 1.0 / gamma ** 2 if gamma > 0 else float("nan")


@register("inverse_margin", record={"measure.inverse_margin": "float"})
def measure(ctx: MeasureContext) -> MeasureOutput:
    margins = margins_of(ctx.logits("train"), ctx.data.y_train).cpu().numpy()
    gamma = float(np.quantile(margins, MARGIN_QUANTILE))
    return MeasureOutput(record={"measure.inverse_margin": inverse_margin(gamma)})
