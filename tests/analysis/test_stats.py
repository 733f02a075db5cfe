import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import analysis.bootstrap as bootstrap
from analysis.axes import swept_axes
from analysis.stats import granulated_kendall, measure_table, rank_correlations, sign_error


def noisy_frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    gap = rng.uniform(0, 2, n)
    frame = pd.DataFrame({"gap.loss": gap, "measure.good": np.round(gap + rng.normal(0, 0.3, n), 1),
                          "measure.noise": rng.normal(size=n)})
    frame.loc[3, "measure.good"] = np.nan  # rows with a missing value are left out
    frame.loc[5, "gap.loss"] = np.inf
    return frame


def test_point_estimates_equal_scipy():
    frame = noisy_frame()
    ok = frame[np.isfinite(frame["measure.good"]) & np.isfinite(frame["gap.loss"])]
    out = rank_correlations(frame, "measure.good", n_boot=0)
    assert out["n"] == len(ok) == len(frame) - 2
    assert out["spearman"] == pytest.approx(stats.spearmanr(ok["measure.good"], ok["gap.loss"]).statistic, abs=1e-14)
    assert out["kendall"] == pytest.approx(stats.kendalltau(ok["measure.good"], ok["gap.loss"]).statistic, abs=1e-14)
    assert math.isnan(out["spearman_lo"])  # no bootstrap asked


def test_bootstrap_ci_contains_estimate_and_is_seeded():
    frame = noisy_frame()
    a = rank_correlations(frame, "measure.good", n_boot=400, seed=1)
    for name in ("spearman", "kendall"):
        assert a[f"{name}_lo"] < a[name] < a[f"{name}_hi"]
        assert a[f"{name}_lo"] > 0.5  # a strong correlation is told apart from none
    assert rank_correlations(frame, "measure.good", n_boot=400, seed=1) == a
    b = rank_correlations(frame, "measure.good", n_boot=400, seed=2)
    assert b["kendall_lo"] != a["kendall_lo"]
    noise = rank_correlations(frame, "measure.noise", n_boot=400, seed=1)
    assert noise["kendall_lo"] < 0 < noise["kendall_hi"]


@pytest.mark.parametrize("matrix", [True, False])
def test_bootstrap_replicates_equal_scipy_on_each_resample(monkeypatch, matrix):
    if not matrix:
        monkeypatch.setattr(bootstrap, "MATRIX_MAX_N", 5)  # force the per-resample scipy path
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, 25).astype(float)  # ties in x, and resampling adds more
    y = x + rng.integers(0, 3, 25)
    index = rng.integers(0, 25, size=(50, 25))
    tau = bootstrap.bootstrap_kendall(x, y, index)
    rho = bootstrap.bootstrap_spearman(x, y, index)
    for b, row in enumerate(index):
        assert tau[b] == pytest.approx(stats.kendalltau(x[row], y[row]).statistic, abs=1e-12)
        assert rho[b] == pytest.approx(stats.spearmanr(x[row], y[row]).statistic, abs=1e-12)


def test_percentile_bootstrap_counts_finite_replicates_and_needs_half():
    values = np.array([0.0, 0.0, 0.0, 1.0, 2.0, 3.0])
    index = bootstrap.resample_index(len(values), 500, seed=4)
    assert np.array_equal(index, np.random.default_rng(4).integers(0, 6, size=(500, 6)))  # the resampling scheme

    def undefined_if_four_zeros(rows):  # the mean, NaN on a resample with four or more zeros
        return np.where((rows < 3).sum(axis=1) >= 4, np.nan, values[rows].mean(axis=1))

    ci = bootstrap.percentile_bootstrap(undefined_if_four_zeros, len(values), 1.0, n_boot=500, seed=4)
    replicates = undefined_if_four_zeros(index)
    finite = replicates[np.isfinite(replicates)]
    assert 250 <= ci.n_finite == len(finite) < ci.n_boot == 500  # some resamples have no statistic, and it says so
    assert (ci.lo, ci.hi) == pytest.approx(tuple(np.percentile(finite, [2.5, 97.5])))
    assert ci.estimate == 1.0
    again = bootstrap.percentile_bootstrap(undefined_if_four_zeros, len(values), 1.0, n_boot=500, seed=4)
    assert again == ci  # seeded: same numbers

    def undefined_if_two_zeros(rows):  # NaN on most resamples
        return np.where((rows < 3).sum(axis=1) >= 2, np.nan, values[rows].mean(axis=1))

    sparse = bootstrap.percentile_bootstrap(undefined_if_two_zeros, len(values), 1.0, n_boot=500, seed=4)
    assert 0 < sparse.n_finite < 250 and math.isnan(sparse.lo) and math.isnan(sparse.hi)  # under half: no CI
    lenient = bootstrap.percentile_bootstrap(undefined_if_two_zeros, len(values), 1.0, n_boot=500, seed=4,
                                             min_finite=0.0)
    assert np.isfinite(lenient.lo) and lenient.n_finite == sparse.n_finite
    none = bootstrap.percentile_bootstrap(undefined_if_two_zeros, len(values), 1.0, n_boot=0)
    assert math.isnan(none.lo) and none.n_finite == none.n_boot == 0


# CIs computed with the bootstrap of analysis/stats.py and analysis/intervention.py as they were before
# analysis.bootstrap.percentile_bootstrap: a change of the resampling scheme (seeding, index layout, the
# percentile rule) fails these.
BEFORE_RANK_CIS = {  # (frame, seed, n_boot) -> spearman_lo, spearman_hi, kendall_lo, kendall_hi
    ("noisy", 1, 400): (0.7877563969234413, 0.9222206227717307, 0.5954045806184449, 0.7736224514480478),
    ("tiny", 0, 100): (0.816496580927726, 1.0, 0.7745966692414834, 1.0),  # 5 of 100 resamples have no rho
}
BEFORE_STATISTIC_CIS = {  # (values, statistic, seed), 500 resamples -> estimate, lo, hi
    ("seven", "mean", 1): (0.21428571428571427, -0.05714285714285716, 0.4932142857142854),
    ("normal", "median", 7): (-0.1446762562735124, -0.3000105984884774, 0.3849938087479083),
}


def test_cis_equal_those_of_the_former_bootstraps():
    frames = {"noisy": noisy_frame(seed=0),
              "tiny": pd.DataFrame({"gap.loss": [0.1, 0.2, 0.3, 0.5], "measure.good": [1.0, 2.0, 2.0, 4.0]})}
    for (name, seed, n_boot), before in BEFORE_RANK_CIS.items():
        out = rank_correlations(frames[name], "measure.good", n_boot=n_boot, seed=seed)
        after = (out["spearman_lo"], out["spearman_hi"], out["kendall_lo"], out["kendall_hi"])
        assert after == pytest.approx(before, rel=1e-12, abs=1e-15), name
        assert out["n_boot"] == n_boot and out["kendall_n_boot_finite"] == out["spearman_n_boot_finite"]
        assert out["spearman_n_boot_finite"] == (n_boot if name == "noisy" else 95)
    samples = {"seven": np.array([0.3, -0.1, 0.5, 0.2, 0.9, -0.4, 0.1]),
               "normal": np.random.default_rng(11).normal(size=40)}
    for (name, statistic, seed), before in BEFORE_STATISTIC_CIS.items():
        ci = bootstrap.bootstrap_statistic(samples[name], getattr(np, statistic), n_boot=500, seed=seed)
        assert tuple(ci[:3]) == pytest.approx(before, rel=1e-12, abs=1e-15) and ci.n_finite == 500


def grid_frame() -> pd.DataFrame:
    """2 widths x 3 learning rates, values chosen for a hand count (see the test)."""
    return pd.DataFrame({
        "hp.width": [8, 8, 8, 16, 16, 16],
        "hp.lr": [0.1, 0.01, 0.001, 0.1, 0.01, 0.001],
        "hp.seed": [0] * 6, "hp.dataset": ["digits"] * 6,
        "measure.m": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        "gap.loss": [1.0, 3.0, 2.0, 6.0, 5.0, 4.0],
    })


def test_granulated_kendall_by_hand():
    # axis lr, groups by width: width 8: m (1,2,3) vs g (1,3,2): 2 concordant, 1 discordant -> 1/3;
    #   width 16: m (4,5,6) vs g (6,5,4): all discordant -> -1.  psi_lr = (1/3 - 1) / 2 = -1/3.
    # axis width, groups by lr: (1,4)/(1,6), (2,5)/(3,5), (3,6)/(2,4): each concordant -> psi_width = 1.
    # Psi = (1 - 1/3) / 2 = 1/3.
    out = granulated_kendall(grid_frame(), "measure.m", "gap.loss")
    assert sorted(out["axes"]) == ["hp.lr", "hp.width"]
    assert out["psi"]["hp.lr"] == pytest.approx(-1 / 3)
    assert out["psi"]["hp.width"] == pytest.approx(1.0)
    assert out["Psi"] == pytest.approx(1 / 3)
    assert out["groups"] == {"hp.width": 3, "hp.lr": 2}
    only = granulated_kendall(grid_frame(), "measure.m", "gap.loss", axes=["hp.width"])
    assert only["Psi"] == pytest.approx(1.0)


def test_granulated_kendall_conditions_on_seed_and_skips_undefined_groups():
    frame = grid_frame()
    second = frame.assign(**{"hp.seed": 1, "gap.loss": [2.0, 2.0, 2.0, 1.0, 2.0, 3.0]})
    both = pd.concat([frame, second], ignore_index=True)
    assert swept_axes(both) == ["hp.width", "hp.lr"]
    assert swept_axes(both, include_seed=True) == ["hp.width", "hp.lr", "hp.seed"]
    out = granulated_kendall(both, "measure.m", "gap.loss")
    # seed 1: lr groups: width 8 has a constant gap (undefined, skipped); width 16: m up, g up -> +1.
    #         width groups: (1,4)/(2,1) -1, (2,5)/(2,2) undefined, (3,6)/(2,3) +1.
    assert out["psi"]["hp.lr"] == pytest.approx((1 / 3 - 1 + 1) / 3)
    assert out["psi"]["hp.width"] == pytest.approx((1 + 1 + 1 - 1 + 1) / 5)
    assert out["undefined"] == {"hp.width": 1, "hp.lr": 1}


def pairs_frame() -> pd.DataFrame:
    rows = [("p1", "a", 1.0, 1.0), ("p1", "a", 2.0, 2.0),      # both up: 0
            ("p2", "a", 1.0, 2.0), ("p2", "a", 2.0, 1.0),      # opposite: 1
            ("p3", "b", 3.0, 5.0), ("p3", "b", 1.0, 4.0),      # both down: 0
            ("p4", "b", 1.0, 1.0), ("p4", "b", 1.0, 2.0),      # measure tied: 1/2
            ("p5", "b", 1.0, 1.0),                             # member missing
            ("p6", "a", 1.0, 1.0), ("p6", "a", 2.0, np.nan),   # value missing
            (None, None, 9.0, 0.0)]                             # not in a pair
    return pd.DataFrame(rows, columns=["pair_id", "pair.factor", "measure.m", "gap.loss"])


def test_sign_error_by_hand():
    out = sign_error(pairs_frame(), "measure.m")
    assert out["per_factor"] == {"a": {"error": 0.5, "n": 2}, "b": {"error": 0.25, "n": 2}}
    assert out["overall"] == pytest.approx(1.5 / 4) and out["n_pairs"] == 4
    assert out["worst"] == 0.5 and out["worst_factor"] == "a"
    assert out["incomplete"] == 2
    reversed_rows = sign_error(pairs_frame().iloc[::-1], "measure.m")  # the order within a pair is irrelevant
    assert reversed_rows["overall"] == out["overall"]
    no_pairs = sign_error(pairs_frame().assign(pair_id=None), "measure.m")
    assert math.isnan(no_pairs["overall"]) and no_pairs["n_pairs"] == 0


def test_measure_table_rows_order_and_values():
    a, b = noisy_frame(seed=0), noisy_frame(seed=1)
    frame = pd.concat([a.assign(**{"hp.dataset": "digits"}), b.assign(**{"hp.dataset": "mnist"})],
                      ignore_index=True)
    frame["measure.constant"] = 1.0
    table = measure_table(frame, n_boot=100, labels=("all",))  # only gap.loss is in the frame: one target
    assert list(zip(table["hp.dataset"], table["measure"])) == [
        ("digits", "measure.good"), ("digits", "measure.noise"), ("mnist", "measure.good"), ("mnist", "measure.noise")]
    assert set(table["target"]) == {"gap.loss"} and set(table["labels"]) == {"all"}
    assert list(table["rank"]) == [1, 2, 1, 2]
    row = table.iloc[2]
    direct = rank_correlations(b, "measure.good", n_boot=100)
    assert row["n"] == direct["n"] and row["kendall"] == pytest.approx(direct["kendall"])
    assert row["kendall_lo"] == pytest.approx(direct["kendall_lo"])
    assert list(table.columns) == ["hp.dataset", "target", "labels", "measure", "n", "spearman", "spearman_lo",
                                   "spearman_hi", "kendall", "kendall_lo", "kendall_hi", "psi", "sign_error",
                                   "sign_error_worst", "worst_factor", "n_pairs", "rank",  # the finite counts follow
                                   "spearman_n_boot_finite", "kendall_n_boot_finite", "n_boot"]
    assert (table[["spearman_n_boot_finite", "kendall_n_boot_finite", "n_boot"]] == 100).all().all()
    assert table["sign_error"].isna().all() and (table["n_pairs"] == 0).all()
    single = measure_table(frame, target="gap.loss", n_boot=100, labels=("all",))  # the former single-target call
    pd.testing.assert_frame_equal(single, table)
    pooled = measure_table(frame, measures=["measure.good"], by=None, n_boot=0)
    assert len(pooled) == 3 and (pooled["group"] == "all").all() and list(pooled["labels"]) == ["all", "true", "random"]
    assert list(pooled["n"]) == [len(frame) - 4, 0, 0]  # no hp.random_labels column: labels unknown, in "all" only
