"""analysis.findings: the verdict rule, the exact binomial CI, and every row on synthetic tables whose
answer is known by construction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.figures.per_point import per_point_bounds
from analysis.findings import COLUMNS, findings_table, findings_text, read_findings, write_findings
from analysis.verdicts import MIN_N, NULL_MARGIN, VERDICT_RULE, binomial_ci, verdict

N_BOOT = 300


def by_id(table: pd.DataFrame) -> dict[str, pd.Series]:
    return {row["finding"]: row for _, row in table.iterrows()}


def nets(n: int, seed: int = 0) -> pd.DataFrame:
    """n nets: test error rises with J (rho = 1), transitions = 3 x neurons (rho = 1 with them) and neurons
    in an order unrelated to the test error; every third net has random labels."""
    neurons = np.random.default_rng(seed).permutation(n) * 16 + 32
    jac = 0.1 * np.arange(1, n + 1)
    return pd.DataFrame({"trial_id": [f"t{i}" for i in range(n)], "hp.random_labels": [float(i % 3 == 2) for i in
                                                                                       range(n)],
                         "measure.jacobian_test": jac, "gap.accuracy": 0.02 + 0.5 * jac,
                         "model.n_neurons": neurons, "measure.transitions_test": 3.0 * neurons})


# -- the rule ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, lo, hi, n, expected", [
    ("positive", 0.2, 0.8, 20, "holds"),
    ("positive", -0.1, 0.8, 20, "inconclusive"),  # the CI contains 0
    ("positive", -0.8, -0.2, 20, "does not hold"),  # the other side
    ("positive", 0.2, 0.8, MIN_N - 1, "inconclusive"),  # too few nets
    ("positive", np.nan, np.nan, 20, "inconclusive"),  # no CI
    ("positive", np.nan, np.nan, 0, "no data"),
    ("negative", -0.8, -0.2, 20, "holds"),
    ("negative", 0.0, 0.8, 20, "does not hold"),  # wholly at or beyond 0 on the other side
    ("negative", -0.2, 0.0, 20, "inconclusive"),  # hi = 0 is not below 0: not strictly on the side
    ("null", -0.3, 0.3, 20, "holds"),
    ("null", 0.1, 0.3, 20, "does not hold"),
    ("null", -0.3, NULL_MARGIN, 20, "inconclusive"),  # cannot rule out a strong correlation
    ("null", -0.3, 0.3, 5, "inconclusive"),
    ("fraction", 0.51, 0.9, 3, "holds"),  # no minimum n for fractions: the exact CI carries it
    ("fraction", 0.1, 0.49, 30, "does not hold"),
    ("fraction", 0.5, 0.9, 30, "inconclusive"),  # lo = 0.5 is not above 0.5
    ("fraction", np.nan, np.nan, 0, "no data"),
])
def test_verdict_rule(kind, lo, hi, n, expected):
    assert verdict(kind, (lo + hi) / 2, lo, hi, n)[0] == expected


def test_the_rule_text_states_the_thresholds():
    for piece in (f"n < {MIN_N}", f"(-{NULL_MARGIN}, +{NULL_MARGIN})", "lo > 0.5", "hi < 0.5", "Clopper-Pearson",
                  "'no data' if n = 0"):
        assert piece in VERDICT_RULE


@pytest.mark.parametrize("k, n", [(0, 1), (3, 7), (12, 12), (40, 97)])
def test_binomial_ci_is_scipys_exact_interval(k, n):
    ci = stats.binomtest(k, n).proportion_ci(0.95)
    assert binomial_ci(k, n) == (ci.low, ci.high)
    assert all(np.isnan(binomial_ci(0, 0)))


def test_constructed_tables_hold_fail_lack_data_and_have_none():
    good = by_id(findings_table(nets(60), n_boot=N_BOOT))
    assert good["a"]["verdict"] == "holds" and good["a"]["value"] == pytest.approx(1.0)
    bad_frame = nets(60).assign(**{"measure.transitions_test": lambda f: f["gap.accuracy"] * 7})
    assert by_id(findings_table(bad_frame, n_boot=N_BOOT))["b_error"]["verdict"] == "does not hold"
    few = by_id(findings_table(nets(MIN_N - 1), n_boot=N_BOOT))["a"]
    assert few["verdict"] == "inconclusive" and f"n < {MIN_N}" in few["note"] and few["n"] == MIN_N - 1
    empty = findings_table(pd.DataFrame(), n_boot=N_BOOT)
    assert list(empty.columns) == COLUMNS and set(empty["verdict"]) == {"no data"}
    assert (empty["n"] == 0).all() and empty["note"].str.len().gt(0).all()
    assert "run `sensitivity sweep pairs`" in by_id(empty)["c"]["note"]
    assert "no pairs in this sweep" in by_id(empty)["c"]["note"]


# -- rows a and b -------------------------------------------------------------------------------------

def test_rows_a_and_b_on_nets_known_by_construction():
    frame = nets(60)
    frame.loc[frame["hp.random_labels"] == 1, "gap.accuracy"] = 0.9  # random labels: high error at any J
    rows = by_id(findings_table(frame, n_boot=N_BOOT))
    n_true = int((frame["hp.random_labels"] == 0).sum())
    assert rows["a_true"]["value"] == pytest.approx(1.0) and rows["a_true"]["n"] == n_true
    assert rows["a_true"]["verdict"] == "holds"
    pooled = stats.spearmanr(frame["measure.jacobian_test"], frame["gap.accuracy"]).statistic
    assert rows["a"]["value"] == pytest.approx(pooled) and rows["a"]["n"] == 60 and 0 < pooled < 1
    assert rows["b_neurons"]["value"] == pytest.approx(1.0) and rows["b_neurons"]["verdict"] == "holds"
    null = stats.spearmanr(frame["measure.transitions_test"], frame["gap.accuracy"]).statistic
    assert abs(null) < 0.15 and rows["b_error"]["value"] == pytest.approx(null)
    assert rows["b_error"]["lo"] < 0 < rows["b_error"]["hi"] and rows["b_error"]["verdict"] == "holds"


# -- rows c to f: paired factors ---------------------------------------------------------------------

def _pair(pid: str, factor: str, ref: object, other: object, error: tuple, jac: tuple, swap: bool = False):
    rows = [{"trial_id": f"{pid}-{i}", "pair_id": pid, "pair.factor": factor, f"hp.{factor}": value,
             "gap.accuracy": error[i], "measure.jacobian_test": jac[i]} for i, value in enumerate((ref, other))]
    return rows[::-1] if swap else rows


def pairs_frame() -> pd.DataFrame:
    rows = []
    for i in range(12):  # random labels: both up in every pair (half listed treated-first)
        rows += _pair(f"c{i}", "random_labels", 0.0, 1.0, (0.1, 0.8), (1.0, 3.0), swap=i % 2 == 1)
        rows += _pair(f"d{i}", "full_batch", False, True, (0.3, 0.2), (2.0, 1.0), swap=i % 3 == 0)  # both down
    for i in range(10):  # augmentation: error down in 10, J down in 7 (2 up, 1 tie)
        jac = (2.0, 1.0) if i < 7 else (1.0, 2.0) if i < 9 else (1.5, 1.5)
        rows += _pair(f"e{i}", "augment", False, True, (0.3, 0.1), jac)
    rows += _pair("f0", "nonlinearity", "relu", "tanh", (0.1, 0.2), (1.0, 2.0))[:1]  # its twin was dropped
    frame = pd.DataFrame(rows)
    for column in ("hp.random_labels", "hp.full_batch", "hp.augment", "hp.nonlinearity"):  # defaults elsewhere
        frame[column] = frame[column].where(frame[column].notna(), {"hp.random_labels": 0.0, "hp.full_batch": False,
                                                                    "hp.augment": False,
                                                                    "hp.nonlinearity": "relu"}[column])
    return frame


def test_pair_rows_orient_by_the_reference_value_and_use_the_exact_ci():
    rows = by_id(findings_table(pairs_frame(), n_boot=N_BOOT))
    c, d, e, f = rows["c"], rows["d"], rows["e"], rows["f"]
    assert (c["value"], c["n"], c["verdict"]) == (1.0, 12, "holds")
    assert (c["lo"], c["hi"]) == binomial_ci(12, 12)
    assert (d["value"], d["n"], d["verdict"]) == (0.0, 12, "does not hold")  # full batch lowered both here
    assert (e["value"], e["n"], e["verdict"]) == (0.7, 10, "inconclusive")
    assert (e["lo"], e["hi"]) == binomial_ci(7, 10)
    assert "test error lower in 10/10, J lower in 7/10" in e["note"]
    assert f["verdict"] == "no data" and f["n"] == 0
    assert "1 nonlinearity pair(s) in the sweep, none with both nets kept" in f["note"]
    loaded = pd.concat([frame := pairs_frame(), frame.iloc[:2].assign(**{"pair.factor": "other", "pair_id": "x"})])
    kept = frame[~frame["pair_id"].str.startswith("c")]  # the random-label pairs were all dropped
    notes = by_id(findings_table(kept, n_boot=N_BOOT, loaded=loaded))
    assert notes["c"]["verdict"] == "no data" and "12 random_labels pair(s) in the sweep" in notes["c"]["note"]
    assert "1 nonlinearity pair(s) in the sweep" in notes["f"]["note"] and notes["d"]["n"] == 12
    no_factor = by_id(findings_table(kept, n_boot=N_BOOT))["c"]["note"]
    assert no_factor.startswith("no random_labels pairs in this sweep") and "larger -n" in no_factor


# -- row g: on vs off the data manifold -------------------------------------------------------------

def trajectories_frame(n: int = 12, n_higher: int = 2) -> pd.DataFrame:
    rows = []
    for i in range(n):
        train, random = (2.0, 1.0) if i < n_higher else (1.0, 3.0)
        for kind, value in (("train_same_class", train), ("train_diff_class", train), ("random", random),
                            ("test", 100.0), ("translation", 0.01)):
            rows.append({"trial_id": f"t{i}", "kind": kind, "index": 0, "jacobian_mean": value})
    rows.append({"trial_id": "not-kept", "kind": "random", "index": 0, "jacobian_mean": 50.0})
    return pd.DataFrame(rows)


def test_row_g_counts_nets_with_train_below_random():
    trials = nets(12)
    g = by_id(findings_table(trials, trajectories=trajectories_frame(), n_boot=N_BOOT))["g"]
    assert (g["value"], g["n"]) == (pytest.approx(10 / 12), 12) and (g["lo"], g["hi"]) == binomial_ci(10, 12)
    assert g["lo"] > 0.5 and g["verdict"] == "holds"
    columns = trials.assign(**{"measure.jacobian_trajectory_train": 1.0, "measure.jacobian_trajectory_random": 0.5})
    fallback = by_id(findings_table(columns, n_boot=N_BOOT))["g"]  # no trajectories table: the trial columns
    assert (fallback["value"], fallback["n"], fallback["verdict"]) == (0.0, 12, "does not hold")
    assert by_id(findings_table(trials, n_boot=N_BOOT))["g"]["verdict"] == "no data"


# -- row h: per test point --------------------------------------------------------------------------

def points_frame(trials: pd.DataFrame, n_points: int = 50) -> pd.DataFrame:
    """Test points whose J rises with the loss (falls in 2 nets), with ||J_y|| inside the Eq. 5 band for
    70% or 90% of the points (alternating nets); train points that must be ignored."""
    loss = np.geomspace(1e-3, 3.0, n_points)
    frames = []
    for i, row in enumerate(trials.itertuples()):
        lower = per_point_bounds(loss, 40.0 / 10, 10)["lower"]
        inside = np.arange(n_points) < (0.7 if i % 2 else 0.9) * n_points
        jacobian = np.exp(-loss) if i < 2 else loss
        frames.append(pd.DataFrame({"trial_id": row.trial_id, "split": "test", "loss": loss, "jacobian": jacobian,
                                    "jacobian_y": np.where(inside, 1.1 * lower, 0.5 * lower)}))
        frames.append(pd.DataFrame({"trial_id": row.trial_id, "split": "train", "loss": loss, "jacobian": -loss,
                                    "jacobian_y": 0.0}))
    return pd.concat(frames, ignore_index=True)


def test_rows_h_per_point_rank_and_band():
    trials = nets(12).assign(**{"data.n_classes": 10, "measure.logit_jacobian_sq_test": 40.0})
    rows = by_id(findings_table(trials, points=points_frame(trials), n_boot=N_BOOT))
    rank, band = rows["h_rank"], rows["h_band"]
    assert (rank["value"], rank["n"], rank["verdict"]) == (pytest.approx(1.0), 12, "holds")  # 10 nets +1, 2 -1
    assert band["value"] == pytest.approx(0.8) and band["n"] == 12
    assert 0.7 <= band["lo"] <= band["hi"] <= 0.9 and band["verdict"] == "holds"
    missing = by_id(findings_table(trials.drop(columns="measure.logit_jacobian_sq_test"),
                                   points=points_frame(trials), n_boot=N_BOOT))
    assert missing["h_band"]["verdict"] == "no data" and missing["h_rank"]["verdict"] == "holds"


# -- text and files ---------------------------------------------------------------------------------

def test_findings_text_lists_the_rows_with_data_and_files_are_written(tmp_path):
    table = findings_table(pd.concat([nets(30), pairs_frame()], ignore_index=True), n_boot=N_BOOT)
    text = findings_text(table)
    lines = text.splitlines()
    with_data = table[table["verdict"] != "no data"]
    assert len(lines) == 1 + len(with_data) + 1 and lines[-1].startswith("  no data: ")
    for line, (_, row) in zip(lines[1:], with_data.iterrows()):
        assert line.split()[0] == row["finding"] and row["verdict"] in line and f"n={row['n']}" in line
    c_line = next(line for line in lines if line.split()[0] == "c")
    lo, hi = binomial_ci(12, 12)
    assert f"1.00 [{lo:.2f}, {hi:.2f}]" in c_line
    write_findings(table, str(tmp_path))
    assert (tmp_path / "findings.txt").read_text() == text + "\n" == read_findings(str(tmp_path))
    assert read_findings(str(tmp_path / "elsewhere")) == ""
    back = pd.read_csv(tmp_path / "findings.csv")
    assert list(back.columns) == COLUMNS and list(back["finding"]) == list(table["finding"])
