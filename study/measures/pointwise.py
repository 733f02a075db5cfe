"""Per-point loss and correctness: l(x) = -log softmax(h(x))_y on every train and test point.

Train points use the labels the net was trained on (random labels included); test points their true labels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from study.measures import MeasureContext, MeasureOutput, register


def loss_and_correct(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(l = -log softmax(h)_y per point in float64 [B], argmax h == y per point [B] bool) from logits h [B, C]."""
    return torch.nn.functional.cross_entropy(logits.double(), y, reduction="none"), logits.argmax(dim=1) == y


@register("pointwise", points={"label": "int",  # the label trained on (train) or the true label (test)
                               "loss": "float",  # -log softmax(h(x))_label
                               "correct": "bool"})
def measure(ctx: MeasureContext) -> MeasureOutput:
    frames = []
    for split, x, y in (("train", ctx.data.x_train, ctx.data.y_train), ("test", ctx.data.x_test, ctx.data.y_test)):
        loss, correct = loss_and_correct(ctx.logits(split), y)
        frames.append(pd.DataFrame({"split": split, "index": np.arange(len(y)), "label": y.cpu().numpy(),
                                    "loss": loss.cpu().numpy(), "correct": correct.cpu().numpy()}))
    return MeasureOutput(points=pd.concat(frames, ignore_index=True))
