"""MeasureContext.logits: the net's outputs on train and test, computed once and shared by the measures."""

import torch

from study.config import TrialConfig
from study.data import load_dataset
from study.measures import MEASURES, MeasureContext
from study.models import build_model

torch.set_num_threads(1)


def test_logits_equal_the_model_and_are_computed_once_per_split():
    cfg = TrialConfig(dataset="digits", n_train=100, n_test=50, width=16, depth=3)
    data = load_dataset(cfg)
    model = build_model(cfg, data.n_features, data.n_classes).eval()
    ctx = MeasureContext(cfg=cfg, model=model, data=data, device=torch.device("cpu"), chunk_size=7)
    rows = []
    model.register_forward_hook(lambda module, args, out: rows.append(args[0].shape[0]))
    for name in ("pointwise", "gap", "baselines"):  # each reads both splits' (or the train) logits
        MEASURES[name](ctx)
    assert sum(rows) == 100 + 50  # one pass over each split, in chunks of 7, for all three measures
    with torch.no_grad():
        torch.testing.assert_close(ctx.logits("train"), model(data.x_train), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(ctx.logits("test"), model(data.x_test), rtol=1e-6, atol=1e-6)
