"""Regularizers as interventions in the report: figure 7 and the report's regularizer section."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from intervention_trials import make_trials  # noqa: E402

from analysis import load_trials  # noqa: E402
from analysis.figures import draw_regularizers, fig7_regularizers  # noqa: E402
from analysis.intervention import conclusion, intervention_effects, regularizer_pairs  # noqa: E402
from analysis.report import build_report  # noqa: E402
from study.records import write_trial  # noqa: E402


@pytest.fixture(scope="module")
def trials():
    return make_trials()


# -- figure 7 and the report ------------------------------------------------------------------------

def _write(location: str, table: pd.DataFrame) -> None:
    for record in table.to_dict("records"):
        write_trial(location, record["trial_id"], record, pd.DataFrame(), pd.DataFrame())


def _text(fig) -> list[str]:
    return [ax.get_xlabel() for ax in fig.axes] + [ax.get_ylabel() for ax in fig.axes]


def test_fig7_files_and_labelled_axes(trials, tmp_path):
    fig = draw_regularizers(trials[0], n_boot=100)
    panels = [ax for ax in fig.axes if ax.collections]
    assert len(panels) == 6  # 2 regularizers x 3 rows
    labels = " ".join(_text(fig))
    assert "softmax Jacobian" in labels and "logit Jacobian" in labels and "Δ loss gap" in labels
    assert "test accuracy" in labels and "noise std" in labels and "strength $\\lambda$" in labels
    assert all(ax.get_xscale() == "log" for ax in panels)
    paths = fig7_regularizers(trials[0], str(tmp_path), n_boot=100)
    assert [os.path.basename(p) for p in paths] == ["fig7_regularizers.png", "fig7_regularizers.pdf"]
    assert all(os.path.getsize(p) > 2000 for p in paths)


@pytest.mark.parametrize("case", ["no_regularized", "no_twins"])
def test_fig7_without_pairs_says_so(trials, case, tmp_path):
    table = trials[0]
    table = table[table["hp.regularizer"] == "none"] if case == "no_regularized" else \
        table[table["hp.regularizer"] != "none"]
    fig = draw_regularizers(table)
    text = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    expected = "No regularized trials" if case == "no_regularized" else "none with an unregularized twin"
    assert expected in text
    assert all(os.path.getsize(p) > 1000 for p in fig7_regularizers(table, str(tmp_path)))


def test_report_has_the_regularizer_section(trials, tmp_path):
    _write(str(tmp_path), trials[0])
    out = tmp_path / "report"
    page = open(build_report(str(tmp_path), str(out), recompute=False, n_boot=100, log=lambda _: None),
                encoding="utf-8").read()
    assert "Regularizers: does lowering the Jacobian lower the gap?" in page
    assert "Figure 7" in page and (out / "fig7_regularizers.png").exists() and (out / "fig7_regularizers.pdf").exists()
    effects = pd.read_csv(out / "intervention.csv")
    assert set(effects["method"]) == {"jacobian", "input_noise"} and effects["n"].max() == 24
    sentences = conclusion(intervention_effects(regularizer_pairs(load_trials(str(tmp_path))), n_boot=100))
    for sentence in sentences:
        assert sentence in page
    assert "lowering the logit Jacobian lowered the gap" in page
    assert "1 regularized trial without an unregularized twin" in page


def test_report_skips_the_section_without_regularized_trials(trials, tmp_path):
    table = trials[0]
    _write(str(tmp_path), table[table["hp.regularizer"] == "none"])
    page = open(build_report(str(tmp_path), str(tmp_path / "r"), recompute=False, n_boot=50, log=lambda _: None),
                encoding="utf-8").read()
    assert "Regularizers: does lowering the Jacobian lower the gap?" in page
    assert "Skipped: no regularized trials" in page and not (tmp_path / "r" / "fig7_regularizers.png").exists()
