"""The regularizers preset: every variant with its unregularized twin, and fed back from a finished sweep."""

from __future__ import annotations

import datetime as dt
import json
import os

import pandas as pd
import pytest

from sweeps.command import main
from study.config import UNREGULARIZED, ConfigError, TrialConfig
from study.schema import config_from_record, hp_record
from study.records import write_trial
from cli_runs import sweep_args
from sweep_helpers import records
from sweeps.cli import prepare, sweep
from sweeps.feedback import select_bases
from sweeps.presets import REGULARIZERS
from sweeps.sampling import parse_overrides, sample

N_VARIANTS = len(REGULARIZERS.intervention.variants)  # 10: 5 regularizers x 2 strengths
STOCHASTIC = ("jacobian_proj", "input_noise")  # refused with L-BFGS
TINY = dict(dataset="synthetic", synthetic_dim=8, n_train=1000, n_test=1000, width=8, depth=2, batch_size=32,
            max_steps=5000, eval_every=20, n_trajectories=1, trajectory_points=8)
SHRINK = ["--set", "n_train=64", "--set", "n_test=64", "--set", "max_steps=40"]  # seconds, not minutes


def twin_of(cfg: TrialConfig) -> TrialConfig:
    return cfg.replace(**UNREGULARIZED)


def check_linked(trials) -> dict[str, list]:
    """Every group of a twin_id holds its twin (trial_id == twin_id) and variants of exactly that twin; no
    trial of the intervention preset carries a pair_id (that names the pairs preset's two-trial pairs)."""
    groups: dict[str, list] = {}
    for t in trials:
        groups.setdefault(t.twin_id, []).append(t)
    for twin_id, group in groups.items():
        (twin,) = [t for t in group if t.config.regularizer == "none"]
        assert twin.trial_id == twin_id and twin.config == twin_of(twin.config)
        assert all(t.twin_factor == "regularizer" and twin_of(t.config) == twin.config for t in group)
        assert all(t.pair_id is None and t.pair_factor is None for t in group)
        variants = {(t.config.regularizer, t.config.reg_strength, t.config.noise_std) for t in group[1:]}
        expected = [v.settings for v in REGULARIZERS.intervention.variants
                    if twin.config.optimizer != "lbfgs" or v.settings["regularizer"] not in STOCHASTIC]
        assert len(variants) == len(group) - 1 == len(expected)
    return groups


def test_the_sample_holds_the_twin_of_every_variant_and_validates():
    drawn = sample(REGULARIZERS, {}, 0, 12)
    groups = check_linked(drawn.trials)
    assert len(groups) == 12 and not drawn.exhausted
    sizes = {len(g) for g in groups.values()}
    assert sizes <= {1 + N_VARIANTS, 1 + N_VARIANTS - 4}  # L-BFGS bases lose jacobian_proj and input_noise
    for t in drawn.trials:  # every config round-trips through the validation
        assert TrialConfig.from_dict(t.config.canonical()) == t.config
    assert len({t.trial_id for t in drawn.trials}) == len(drawn.trials)
    assert sample(REGULARIZERS, {}, 0, 12) == drawn and sample(REGULARIZERS, {}, 0, 6).trials == drawn.trials[
        :sum(len(g) for g in list(groups.values())[:6])]


def test_set_on_a_regularizer_field_keeps_only_those_variants():
    drawn = sample(REGULARIZERS, parse_overrides(["regularizer=jacobian,input_noise", "optimizer=adam"]), 0, 3)
    kinds = sorted({(t.config.regularizer, t.config.reg_strength, t.config.noise_std) for t in drawn.trials})
    assert kinds == [("input_noise", 0.0, 0.1), ("input_noise", 0.0, 0.3), ("jacobian", 0.001, 0.0),
                     ("jacobian", 0.01, 0.0), ("none", 0.0, 0.0)]
    assert len(drawn.trials) == 3 * 5
    with pytest.raises(ConfigError, match="keeps no variant of preset regularizers"):
        sample(REGULARIZERS, parse_overrides(["reg_strength=0.5"]), 0, 3)


# -- fed from a finished sweep -------------------------------------------------------------------------

def write_results(location, rows: list[tuple[TrialConfig, str, float]]) -> None:
    """One trials row per (config, status, gap.loss), as a sweep would write it (no points/trajectories)."""
    start = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
    for i, (cfg, status, gap) in enumerate(rows):
        record = {**hp_record(cfg), "trial_id": cfg.trial_id, "schema_version": 1, "status": status,
                  "gap.loss": gap, "measure.jacobian_test": 0.1 + gap, "train.accuracy": 1.0,
                  "created_at": pd.Timestamp(start + dt.timedelta(minutes=i))}
        write_trial(str(location), cfg.trial_id, record, pd.DataFrame(), pd.DataFrame())


@pytest.fixture
def finished(tmp_path):
    """A finished sweep's directory: 6 trials, gaps 0.1-0.9; the largest gap is not ok, and one row is a
    regularized variant of the third-largest-gap base (it must not count twice)."""
    cfgs = [TrialConfig(**{**TINY, "width": w}, seed=s, lr=lr) for s, w, lr in
            [(1, 8, 0.01), (2, 16, 0.001), (3, 8, 0.003), (4, 32, 0.01), (5, 16, 0.002)]]
    rows = [(cfgs[0], "not_fit", 0.9), (cfgs[1], "ok", 0.8), (cfgs[2], "ok", 0.3), (cfgs[3], "ok", 0.5),
            (cfgs[4], "ok", 0.1), (cfgs[3].replace(regularizer="jacobian", reg_strength=0.1), "ok", 0.6)]
    write_results(tmp_path / "done", rows)
    return tmp_path / "done", cfgs


def test_from_top_takes_the_k_largest_gap_ok_trials_as_bases(finished, tmp_path):
    done, cfgs = finished
    bases, selected = select_bases(str(done), REGULARIZERS, 2, None)
    assert bases == [cfgs[1], cfgs[3]] and selected == [cfgs[1].trial_id, cfgs[3].replace(
        regularizer="jacobian", reg_strength=0.1).trial_id]  # the regularized row stands for its base
    bases3, _ = select_bases(str(done), REGULARIZERS, 3, None)
    assert bases3 == [cfgs[1], cfgs[3], cfgs[2]]

    plan = prepare(sweep_args("regularizers", "--from", str(done), "--top", "2", "--out", str(tmp_path / "r"),
                              "--set", "max_steps=40", "--seed", "7"))
    groups = check_linked(plan.sample.trials)
    twins = [t.config for t in plan.sample.trials if t.config.regularizer == "none"]
    assert twins == [cfgs[1].replace(max_steps=40), cfgs[3].replace(max_steps=40)]  # every other field kept
    assert len(plan.sample.trials) == 2 * (1 + N_VARIANTS) and len(groups) == 2
    assert plan.source["selected_trial_ids"] == selected and not (tmp_path / "r").exists()
    again = prepare(sweep_args("regularizers", "--from", str(done), "--top", "2", "--out", str(tmp_path / "r")))
    assert [t.config for t in again.sample.trials if t.config.regularizer == "none"] == [cfgs[1], cfgs[3]]
    assert again.sample.sweep_id != plan.sample.sweep_id


def test_rows_parse_back_into_their_exact_configs(finished):
    from analysis.load import load_trials

    done, cfgs = finished
    trials = load_trials(str(done)).set_index("trial_id", drop=False)
    for cfg in cfgs:
        assert config_from_record(trials.loc[cfg.trial_id]) == cfg
    older = trials.loc[cfgs[1].trial_id].drop(["hp.augment_shift", "hp.noise_std"])  # a record without those fields
    assert config_from_record(older) == cfgs[1]


def test_where_selects_by_a_query_and_composes_with_top(finished, tmp_path):
    done, cfgs = finished
    bases, _ = select_bases(str(done), REGULARIZERS, None, "`hp.width` >= 16 and `hp.regularizer` == 'none'")
    assert bases == [cfgs[1], cfgs[3], cfgs[4]]  # all matches, largest gap first; not_fit excluded
    bases, _ = select_bases(str(done), REGULARIZERS, 1, "`gap.loss` < 0.55")
    assert bases == [cfgs[3]]
    plan = prepare(sweep_args("regularizers", "--from", str(done), "--where", "`hp.seed` == 3",
                              "--out", str(tmp_path / "r")))
    assert [t.config for t in plan.sample.trials if t.config.regularizer == "none"] == [cfgs[2]]


@pytest.mark.parametrize("extra, fragment", [
    (["--where", "`hp.width` >>= 3"], "--where '`hp.width` >>= 3' is not a query over the trials table"),
    (["--where", "`hp.widht` == 1"], "the trials table has no column `hp.widht`; did you mean `hp.width`?"),
    (["--where", "`hp.width` + 1"], "is not a condition (true or false for each trial)"),
    (["--where", "`hp.width` > 1000"], "matches none of the 5 trials with status ok"),
    (["--top", "0"], "--top must be a positive integer, got 0"),
    (["--top", "-2"], "--top must be a positive integer, got -2"),
    (["--top", "2", "-n", "3"], "--num-samples does not apply with --from"),
    ([], "--from needs --top K"),
    (["--top", "2", "--set", "width=8,16"], "with --from, --set pins a field"),
])
def test_bad_feedback_arguments_are_one_line(finished, tmp_path, capsys, extra, fragment):
    done, _ = finished
    out = tmp_path / "r"
    assert main(["sweep", "regularizers", "--from", str(done), "--out", str(out), *extra]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("sensitivity sweep: error: ") and fragment in line, line
    assert not out.exists()


def test_from_missing_or_empty_and_top_without_from_are_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    cases = [(["regularizers", "--from", str(tmp_path / "nope"), "--top", "2"], "no such directory"),
             (["regularizers", "--from", str(tmp_path / "empty"), "--top", "2"], "holds no trial records"),
             (["regularizers", "--top", "2"], "--top selects trials of a finished sweep: give"),
             (["regularizers", "--where", "`gap.loss` > 1"], "--where selects trials of a finished sweep"),
             (["smoke", "--from", str(tmp_path / "empty"), "--top", "2"], "which preset smoke does not have")]
    for argv, fragment in cases:
        assert main(["sweep", *argv, "--out", str(tmp_path / "r")]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert fragment in line, line
    assert sorted(os.listdir(tmp_path)) == ["empty"]


def test_from_top_end_to_end_gives_records_that_regularizer_pairs_matches(finished, ray_cluster, tmp_path):
    from analysis.intervention import regularizer_pairs
    from analysis.load import load_trials

    done, cfgs = finished
    out = tmp_path / "r"
    plan, report, counts = sweep(sweep_args("regularizers", "--from", str(done), "--top", "2", "--out", str(out),
                                            *SHRINK))
    n = 2 * (1 + N_VARIANTS)
    assert report.missing == 0 and sum(counts.values()) == n and len(records(out)) == n
    trials = load_trials(str(out))
    twins = trials[trials["hp.regularizer"] == "none"]
    assert sorted(twins["trial_id"]) == sorted(c.replace(n_train=64, n_test=64, max_steps=40).trial_id
                                               for c in (cfgs[1], cfgs[3]))
    assert (trials["twin.factor"] == "regularizer").all() and set(trials["twin_id"]) == set(twins["trial_id"])
    assert trials["pair_id"].isna().all()
    pairs = regularizer_pairs(trials)
    assert len(pairs) == 2 * N_VARIANTS and pairs.attrs["unmatched"] == []
    assert set(pairs["baseline_id"]) == set(twins["trial_id"])
    by_id = trials.set_index("trial_id")["twin_id"]
    assert (pairs["trial_id"].map(by_id) == pairs["baseline_id"]).all()  # twin_id = the twin that serves it
    from analysis.stats import sign_error

    signs = sign_error(trials, "measure.jacobian_test")  # every (variant, twin) pair counts, per regularizer
    assert signs["n_pairs"] + signs["incomplete"] == 2 * N_VARIANTS and signs["ambiguous"] == 0
    assert set(signs["per_factor"]) <= {f"regularizer={r}" for r in trials["hp.regularizer"]}
    (meta_file,) = [n for n in os.listdir(out / "sweeps") if not n.startswith(".")]
    meta = json.loads((out / "sweeps" / meta_file).read_text())
    assert meta["source"]["from"] == str(done) and meta["source"]["top"] == 2
