"""Generalization gap: loss gap = test loss - train loss; accuracy gap = train accuracy - test accuracy.

Train loss and accuracy are on the labels as trained (random labels included), as in the study; the
accuracy on the true training labels is recorded too (`train.accuracy_true_labels`).
"""

from __future__ import annotations

from study.measures import MeasureContext, MeasureOutput, register
from study.measures.pointwise import loss_and_correct


def generalization_gap(train_loss: float, test_loss: float, train_acc: float, test_acc: float) -> dict[str, float]:
    """{'gap.loss': test_loss - train_loss, 'gap.accuracy': train_acc - test_acc}."""
    return {"gap.loss": test_loss - train_loss, "gap.accuracy": train_acc - test_acc}


@register("gap", record={"train.loss": "float", "train.accuracy": "float", "train.accuracy_true_labels": "float",
                          "test.loss": "float", "test.accuracy": "float", "gap.loss": "float", "gap.accuracy": "float"})
def measure(ctx: MeasureContext) -> MeasureOutput:
    data = ctx.data
    tr_loss, tr_ok = loss_and_correct(ctx.logits("train"), data.y_train)
    te_loss, te_ok = loss_and_correct(ctx.logits("test"), data.y_test)
    _, true_ok = loss_and_correct(ctx.logits("train"), data.y_train_true)
    record = {"train.loss": float(tr_loss.mean()), "train.accuracy": float(tr_ok.double().mean()),
              "test.loss": float(te_loss.mean()), "test.accuracy": float(te_ok.double().mean()),
              "train.accuracy_true_labels": float(true_ok.double().mean())}
    record.update(generalization_gap(record["train.loss"], record["test.loss"],
                                     record["train.accuracy"], record["test.accuracy"]))
    return MeasureOutput(record=record)
