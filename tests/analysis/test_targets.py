"""Both gap targets and the label strata: stats columns target/labels, `--gap` through the report, figures 1 and 4."""

from __future__ import annotations

import math
import os
import sys

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from scipy import stats

sys.path.insert(0, os.path.dirname(__file__))
from synthetic_results import make_results  # noqa: E402

import analysis.report  # noqa: E402
from analysis import cli, filter_trials, load_trials  # noqa: E402
from analysis.figures import draw_jacobian_vs_gap, draw_pairs, pair_differences  # noqa: E402
from analysis.report import headline  # noqa: E402
from analysis.stats import measure_table, rank_correlations  # noqa: E402
from analysis.strata import GAPS, LABELS, TARGETS, gap_column, label_mask  # noqa: E402

MEASURES = ["measure.jacobian_test", "measure.noise"]


def nets(seed: int = 0, n_true: int = 30, n_random: int = 12, dataset: str = "digits") -> pd.DataFrame:
    """Within true-label nets J tracks the accuracy gap (test error) but not the loss gap; random-label
    nets have a larger J and gap (chance-level error) and a loss gap that follows J."""
    rng = np.random.default_rng(seed)
    jac = np.exp(rng.normal(np.log(0.3), 0.6, n_true))
    true = pd.DataFrame({"hp.random_labels": 0.0, "measure.jacobian_test": jac,
                         "gap.accuracy": 0.05 + 0.2 * jac + rng.normal(0, 0.005, n_true),
                         "gap.loss": rng.uniform(0.1, 3.0, n_true)})
    jac_r = np.exp(rng.normal(np.log(3.0), 0.4, n_random))
    random = pd.DataFrame({"hp.random_labels": rng.choice([0.5, 1.0], n_random), "measure.jacobian_test": jac_r,
                           "gap.accuracy": rng.uniform(0.85, 0.9, n_random), "gap.loss": 5 + 3 * jac_r})
    frame = pd.concat([true, random], ignore_index=True).assign(**{"hp.dataset": dataset})
    return frame.assign(**{"measure.noise": rng.normal(size=len(frame))})


def subset(frame: pd.DataFrame, labels: str) -> pd.DataFrame:
    """The stratum, selected independently of analysis.strata."""
    if labels == "all":
        return frame
    return frame[frame["hp.random_labels"] == 0] if labels == "true" else frame[frame["hp.random_labels"] > 0]


# -- stats: target and labels columns -------------------------------------------------------------

def test_stats_have_both_targets_and_three_strata_equal_to_scipy_on_each_subset():
    frame = pd.concat([nets(0), nets(1, n_true=20, n_random=2, dataset="mnist")], ignore_index=True)
    table = measure_table(frame, measures=MEASURES, n_boot=200, seed=3)
    assert list(table.columns[:4]) == ["hp.dataset", "target", "labels", "measure"]
    assert len(table) == 2 * len(TARGETS) * len(LABELS) * len(MEASURES)
    assert table.groupby(["hp.dataset", "target", "labels"]).size().eq(len(MEASURES)).all()
    keys = list(dict.fromkeys(zip(table["hp.dataset"], table["target"], table["labels"])))  # row order
    assert keys == [(d, t, s) for d in ("digits", "mnist") for t in TARGETS for s in LABELS]
    for (dataset, target, labels), rows in table.groupby(["hp.dataset", "target", "labels"]):
        data = subset(frame[frame["hp.dataset"] == dataset], labels)
        assert (rows["n"] == len(data)).all()
        assert sorted(rows["rank"]) == list(range(1, len(MEASURES) + 1))
        for _, row in rows.iterrows():
            if len(data) < 3:  # mnist has 2 random-label nets: the rows are there, with n, and NaN
                assert math.isnan(row["spearman"]) and math.isnan(row["spearman_lo"]) and row["n"] == 2
                continue
            expected = stats.spearmanr(data[row["measure"]], data[target]).statistic
            assert row["spearman"] == pytest.approx(expected, abs=1e-12)
            assert row["kendall"] == pytest.approx(stats.kendalltau(data[row["measure"]], data[target]).statistic)
            direct = rank_correlations(data, row["measure"], target, n_boot=200, seed=3)
            assert (row["spearman_lo"], row["spearman_hi"]) == (direct["spearman_lo"], direct["spearman_hi"])
            assert row["spearman_lo"] <= row["spearman"] <= row["spearman_hi"]
    pick = table.set_index(["hp.dataset", "target", "labels", "measure"])["spearman"]
    assert pick["digits", "gap.accuracy", "true", "measure.jacobian_test"] > 0.95  # J tracks test error ...
    assert abs(pick["digits", "gap.loss", "true", "measure.jacobian_test"]) < 0.4  # ... but not the loss gap
    assert pick["digits", "gap.loss", "all", "measure.jacobian_test"] > 0.5  # pooled: mostly "random or not"


def test_measure_table_single_target_call_missing_targets_and_unknown_labels():
    frame = nets(2)
    frame.loc[0, "hp.random_labels"] = np.nan  # unknown labels: in "all" only
    single = measure_table(frame, measures=MEASURES, target="gap.loss", n_boot=0)
    assert set(single["target"]) == {"gap.loss"} and len(single) == len(LABELS) * len(MEASURES)
    assert single.groupby("labels")["n"].max().to_dict() == {"all": 42, "true": 29, "random": 12}
    positional = measure_table(frame, MEASURES, "gap.loss", n_boot=0)  # the former positional target
    pd.testing.assert_frame_equal(positional, single)
    no_accuracy = measure_table(frame.drop(columns="gap.accuracy"), measures=MEASURES, n_boot=0)
    assert set(no_accuracy["target"]) == {"gap.loss"}  # a target the table lacks is left out
    with pytest.raises(ValueError):
        measure_table(frame, targets=["gap.loss"], target="gap.loss")


def test_label_mask_and_gap_column():
    frame = pd.DataFrame({"hp.random_labels": [0.0, 0.25, 1.0, np.nan]})
    assert label_mask(frame, "true").tolist() == [True, False, False, False]
    assert label_mask(frame, "random").tolist() == [False, True, True, False]
    assert label_mask(frame, "all").all()
    assert not label_mask(frame.drop(columns="hp.random_labels"), "true").any()
    assert [gap_column(g) for g in ("accuracy", "loss", "gap.loss")] == ["gap.accuracy", "gap.loss", "gap.loss"]
    with pytest.raises(ValueError):
        gap_column("error")
    assert tuple(GAPS) == cli.GAPS  # the command's choices


# -- --gap through the command into the headline and figures 1 and 4 -------------------------------

@pytest.fixture(scope="module")
def analyzed(tmp_path_factory):
    """One synthetic sweep analysed twice through analysis.cli: by default and with --gap loss."""
    results = str(tmp_path_factory.mktemp("results"))
    make_results(results)
    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        seen = []
        for name in ("fig1_jacobian_vs_gap", "fig4_pairs"):
            real = getattr(analysis.report, name)
            patch.setattr(analysis.report, name,
                          lambda *a, _real=real, _name=name, **k: seen.append((_name, k.get("gap"))) or _real(*a, **k))
        for flag in ([], ["--gap", "loss"]):
            out = os.path.join(results, "report-" + (flag[-1] if flag else "default"))
            seen.clear()
            assert cli.main([results, "--out", out, "--no-recompute", "--bootstrap", "30", *flag]) == 0
            with open(os.path.join(out, "headline.txt"), encoding="utf-8") as handle:
                runs[flag[-1] if flag else "default"] = (out, handle.read(), list(seen))
    return results, runs


def test_gap_flag_names_the_target_in_the_first_headline_line(analyzed):
    _, runs = analyzed
    assert "(gap.accuracy:" in runs["default"][1].splitlines()[0] and "gap.loss" not in runs["default"][1]
    assert "(gap.loss:" in runs["loss"][1].splitlines()[0] and "gap.accuracy" not in runs["loss"][1]
    assert runs["default"][2] == [("fig1_jacobian_vs_gap", "accuracy"), ("fig4_pairs", "accuracy")]
    assert runs["loss"][2] == [("fig1_jacobian_vs_gap", "loss"), ("fig4_pairs", "loss")]


@pytest.mark.parametrize("run, target", [("default", "gap.accuracy"), ("loss", "gap.loss")])
def test_headline_gives_pooled_and_true_label_values_of_the_chosen_target(analyzed, run, target):
    _, runs = analyzed
    out, text, _ = runs[run]
    table = pd.read_csv(os.path.join(out, "stats.csv"))
    assert set(table["target"]) == set(TARGETS) and set(table["labels"]) == set(LABELS)  # both, either way
    lines = text.strip().splitlines()
    for dataset in ("digits", "synthetic"):
        pooled_line = next(line for line in lines if line.startswith(f"- {dataset} (20 nets): "))
        true_line = lines[lines.index(pooled_line) + 1]
        assert true_line.startswith("  true-label nets only (18 of 20): ")
        for labels, line in (("all", pooled_line), ("true", true_line)):
            row = table[(table["hp.dataset"] == dataset) & (table["target"] == target) & (table["labels"] == labels)
                        & (table["measure"] == "measure.jacobian_test")].iloc[0]
            assert (f"Jacobian norm (test): Spearman {row.spearman:+.2f} [{row.spearman_lo:.2f}, "
                    f"{row.spearman_hi:.2f}], Kendall {row.kendall:+.2f}") in line


def test_bad_gap_is_an_argparse_error(analyzed, capsys):
    results, _ = analyzed
    with pytest.raises(SystemExit) as exit_info:
        cli.main([results, "--gap", "error", "--no-recompute"])
    assert exit_info.value.code == 2 and "argument --gap: invalid choice: 'error'" in capsys.readouterr().err


def test_headline_without_true_label_nets_says_so():
    table = measure_table(nets(4).assign(**{"hp.random_labels": 1.0}), measures=MEASURES, n_boot=0)
    text = headline(table, gap="loss")
    assert text.splitlines()[0].startswith("Rank correlation with the generalization gap (gap.loss:")
    assert text.splitlines()[2] == "  true-label nets only (0 of 42): none among the kept nets"


# -- figures 1 and 4 -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kept(analyzed):
    results, _ = analyzed
    return filter_trials(load_trials(results)).kept


def test_fig1_marks_true_and_random_label_nets_and_states_both_correlations(kept):
    fig = draw_jacobian_vs_gap(kept)
    legend = next(leg for leg in fig.legends if leg.get_title().get_text() == "training labels")
    assert [t.get_text() for t in legend.get_texts()] == ["true labels", "random labels"]
    panels = [ax for ax in fig.axes if ax.collections]
    for ax, dataset in zip(panels, ("digits", "synthetic")):
        data = kept[kept["hp.dataset"] == dataset]
        true, random = data[data["hp.random_labels"] == 0], data[data["hp.random_labels"] > 0]
        filled, hollow = ax.collections  # true labels filled, random labels open (no face color)
        assert len(filled.get_offsets()) == len(true) == 18 and len(hollow.get_offsets()) == len(random) == 2
        assert len(filled.get_facecolors()) and not len(hollow.get_facecolors())
        np.testing.assert_allclose(np.asarray(hollow.get_offsets())[:, 1], random["gap.accuracy"])
        rho_all = stats.spearmanr(data["measure.jacobian_test"], data["gap.accuracy"]).statistic
        rho_true = stats.spearmanr(true["measure.jacobian_test"], true["gap.accuracy"]).statistic
        title = ax.get_title().replace("−", "-")
        assert f"n = 20, Spearman ρ = {rho_all:.2f} (all)" in title
        assert f"true labels: n = 18, ρ = {rho_true:.2f}" in title


def test_fig1_loss_gap_axis_is_log_or_symlog(kept):
    for ax in [a for a in draw_jacobian_vs_gap(kept, gap="loss").axes if a.collections]:
        assert ax.get_yscale() == "log" and "loss gap" in ax.get_ylabel()
        assert np.allclose(sorted(np.concatenate([c.get_offsets()[:, 1] for c in ax.collections])),
                           sorted(kept.loc[kept["hp.dataset"] == ax.get_title().split("\n")[0], "gap.loss"]))
    shifted = kept.assign(**{"gap.loss": kept["gap.loss"] - 0.5})  # some gaps <= 0
    assert {a.get_yscale() for a in draw_jacobian_vs_gap(shifted, gap="loss").axes if a.collections} == {"symlog"}


@pytest.mark.parametrize("gap", ["accuracy", "loss"])
def test_fig4_uses_the_chosen_gap_and_counts_pairs_moving_with_it(kept, gap):
    target = gap_column(gap)
    kept = kept.assign(**{"gap.accuracy": 1 - kept["gap.accuracy"]})  # the two gaps now move apart in pairs
    fig = draw_pairs(kept, gap=gap)
    panels = [ax for ax in fig.axes if ax.collections or ax.patches]
    assert ("accuracy gap" if gap == "accuracy" else "loss gap") in panels[0].get_xlabel()
    pairs = pair_differences(kept)
    assert (np.sign(pairs["gap.accuracy.change"]) != np.sign(pairs["gap.loss.change"])).any()
    np.testing.assert_allclose(sorted(np.concatenate([c.get_offsets()[:, 0] for c in panels[0].collections])),
                               sorted(pairs[f"{target}.change"]))
    twin = next(ax for ax in fig.axes if ax.get_ylabel().startswith("pairs moving"))  # the Jacobian panel's
    assert twin.get_ylabel().endswith(f"with the {gap} gap")
    expected = []
    for contrast in sorted(pairs["contrast"].unique()):
        rows = pairs[pairs["contrast"] == contrast]
        moved = np.sign(np.log(rows["measure.jacobian_test.change"])) == np.sign(rows[f"{target}.change"])
        expected.append(f"{int(moved.sum())}/{len(rows)}")
    assert [t.get_text() for t in twin.get_yticklabels()] == expected
