"""analysis.ranking and figure 8 on a grid whose answer is known: a measure equal to the gap ranks first by
every criterion, its negative last by the signed ones (and as high by the sign-blind CMI score), the protocol
columns use the true-label nets only, and the Spearman columns reused from a measure_table equal fresh ones."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis.figures.ranking import ACCENT, draw_ranking, fig8_ranking
from analysis.ranking import CRITERIA, ranking_table, standing
from analysis.stats import measure_table


def _grid(seeds=5, random_labels=False):
    """Axes a, b, c (2 values each), `seeds` each; the accuracy gap rises with a and b (10,000 test points)."""
    rng = np.random.default_rng(0)
    rows = [{"hp.dataset": "toy", "hp.a": a, "hp.b": b, "hp.c": c, "hp.seed": s, "hp.n_test": 10_000,
             "hp.random_labels": 0.0} for a in (0, 1) for b in (0, 1) for c in (0, 1) for s in range(seeds)]
    df = pd.DataFrame(rows)
    df["gap.accuracy"] = 0.1 + 0.2 * df["hp.a"] + 0.1 * df["hp.b"] + 0.01 * rng.standard_normal(len(df))
    df["gap.loss"] = 3 * df["gap.accuracy"] + 0.01 * rng.standard_normal(len(df))
    df["measure.jacobian_test"] = df["gap.accuracy"] + 0.002 * rng.standard_normal(len(df))
    df["measure.against"] = -df["gap.accuracy"]
    df["measure.noise"] = rng.standard_normal(len(df))
    if random_labels:  # random-label nets: a larger gap, and a measure that falls with it there
        extra = df.assign(**{"hp.random_labels": 1.0, "gap.accuracy": df["gap.accuracy"] + 0.5,
                             "measure.jacobian_test": -df["measure.jacobian_test"]})
        df = pd.concat([df, extra], ignore_index=True)
    return df


@pytest.fixture(scope="module")
def table():
    return ranking_table(_grid(), n_boot=200)


def test_the_gap_itself_ranks_first_by_every_criterion_and_its_negative_last_by_the_signed_ones(table):
    acc = table[table["target"] == "gap.accuracy"].set_index("measure")
    good, bad = acc.loc["measure.jacobian_test"], acc.loc["measure.against"]
    assert good["spearman_true"] > 0.95 and good["psi"] > 0.9 and good["cmi"] > 0.6
    assert good["rse_mean"] < 0.05 and good["rse_worst"] < 0.2 and good["rse_environments"] > 0
    assert pd.isna(good["rse_worst_axis"]) == (good["rse_worst"] == 0)
    per_axis = [f"{k}.hp.{a}" for a in "abc" for k in ("psi", "rse_mean", "rse_worst")]
    assert set(per_axis) <= set(table.columns) and good["psi.hp.a"] == pytest.approx(1.0)
    assert np.mean([good[f"psi.hp.{a}"] for a in "abc" if pd.notna(good[f"psi.hp.{a}"])]) == pytest.approx(good["psi"])
    assert bad["rse_mean.hp.a"] == pytest.approx(1.0) and bad["rse_worst.hp.a"] == pytest.approx(1.0) and bad["rse_worst_axis"] in ("hp.a", "hp.b")
    assert all(good[f"rank_{c}"] == 1 for c in CRITERIA if c != "cmi")
    assert bad["spearman_true"] < -0.95 and bad["rank_spearman_true"] == 3 and bad["rse_mean"] > 0.95
    assert bad["cmi"] == 1.0 and bad["rank_cmi"] == 1  # -gap exactly: mutual information does not see the sign
    assert abs(acc.loc["measure.noise", "spearman_true"]) < 0.4 and acc.loc["measure.noise", "cmi"] < 0.1
    assert good["spearman_true_lo"] <= good["spearman_true"] <= good["spearman_true_hi"]
    assert list(table["target"].unique()) == ["gap.accuracy", "gap.loss"] and set(table["group"]) == {"toy"}


def test_the_protocols_use_the_true_label_nets_only():
    mixed, true = ranking_table(_grid(random_labels=True), n_boot=50), ranking_table(_grid(), n_boot=50)
    key = ["target", "measure"]
    a, b = mixed.set_index(key).sort_index(), true.set_index(key).sort_index()
    for column in ("psi", "cmi", "rse_mean", "rse_worst", "spearman_true"):
        assert np.allclose(a[column], b[column], equal_nan=True), column
    assert a.loc[("gap.accuracy", "measure.jacobian_test"), "n_all"] == 80
    assert not np.isclose(a.loc[("gap.accuracy", "measure.jacobian_test"), "spearman_all"],
                          b.loc[("gap.accuracy", "measure.jacobian_test"), "spearman_all"])


def test_spearman_columns_reused_from_a_measure_table_equal_fresh_ones():
    df = _grid(random_labels=True)
    fresh = ranking_table(df, n_boot=100)
    reused = ranking_table(df, n_boot=100, stats=measure_table(df, n_boot=100))
    columns = [c for c in fresh.columns if c.startswith("spearman")]
    assert np.allclose(fresh[columns].to_numpy(float), reused[columns].to_numpy(float), equal_nan=True)


def test_standing_says_where_the_jacobian_ranks(table):
    lines = standing(table)
    assert len(lines) == 2 and lines[0].startswith("toy, gap.accuracy: measure.jacobian_test: spearman_all +")
    assert "(rank 1 of 3)" in lines[0] and "rse_worst" in lines[0]


def test_a_measure_without_variation_is_left_out_and_undefined_criteria_are_nan():
    df = _grid(seeds=1).assign(**{"measure.constant": 1.0})
    t = ranking_table(df, n_boot=20)
    assert "measure.constant" not in set(t["measure"])
    row = t[(t["measure"] == "measure.jacobian_test") & (t["target"] == "gap.accuracy")].iloc[0]
    assert math.isnan(row["rse_mean"]) and row["rse_environments"] == 0 and pd.isna(row["rank_rse_mean"])


def test_figure8_draws_every_measure_with_the_jacobian_in_the_accent_color(table, tmp_path):
    fig = draw_ranking(table)
    axes = fig.axes
    assert len(axes) == 8  # 2 targets x 4 criteria
    ticks = {t.get_text(): t for t in axes[0].get_yticklabels()}
    assert len(ticks) == 3 and ticks[max(ticks, key=lambda k: "Jacobian" in k)].get_color() == ACCENT
    assert axes[0].get_yticklabels()[-1].get_color() == ACCENT  # sorted: the best true-label rho on top
    paths = fig8_ranking(_grid(), str(tmp_path), table)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["fig8_ranking.png", "fig8_ranking.pdf"]
    assert draw_ranking(table.iloc[0:0]).axes[0].texts  # an empty table says why
    drawn = draw_ranking(table.assign(psi=np.nan))
    assert "differ in one axis only" in drawn.axes[1].texts[0].get_text() and not drawn.axes[0].texts
