"""The report and the `analyze` command: what they write, the numbers they show, tiny and empty inputs."""

from __future__ import annotations

import argparse
import base64
import html
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from synthetic_results import make_results  # noqa: E402

from analysis.cli import add_arguments, run  # noqa: E402
from analysis.report import (ReportError, build_report, headline, region_trial,  # noqa: E402
                             sweep_metadata)
from analysis import load_trials  # noqa: E402
from study.config import TrialConfig  # noqa: E402
from study.schema import config_from_record, hp_record  # noqa: E402
from study.records import write_trial

IMAGE = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A synthetic sweep (43 trials, 3 dropped) and its report, built once without recomputing figure 6."""
    results = str(tmp_path_factory.mktemp("results"))
    make_results(results)
    out = os.path.join(results, "report")
    path = build_report(results, out, recompute=False, n_boot=200, log=lambda _: None)
    with open(path, encoding="utf-8") as handle:
        page = handle.read()
    return results, out, path, page


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_report_embeds_every_figure(built):
    _, out, path, page = built
    assert path == os.path.join(out, "report.html")
    images = IMAGE.findall(page)
    assert len(images) == 6  # figures 1-5 and 8; figure 6 was not recomputed
    assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
    for n in (1, 2, 3, 4, 5, 8):
        assert any(name.startswith(f"fig{n}_") and name.endswith(".pdf") for name in os.listdir(out))
    assert "Not drawn: recomputing a trial was switched off." in page


def test_report_shows_the_stats_table_and_writes_it(built):
    _, out, _, page = built
    stats = pd.read_parquet(os.path.join(out, "stats.parquet"))
    from_csv = pd.read_csv(os.path.join(out, "stats.csv"))
    assert len(stats) == len(from_csv) > 0 and set(stats["hp.dataset"]) == {"digits", "synthetic"}
    np.testing.assert_allclose(stats["spearman"], from_csv["spearman"])
    assert list(stats.columns[:4]) == ["hp.dataset", "target", "labels", "measure"]
    assert set(stats["target"]) == {"gap.accuracy", "gap.loss"} and set(stats["labels"]) == {"all", "true", "random"}
    for value in stats[["spearman", "spearman_lo", "kendall", "kendall_hi"]].to_numpy().ravel():
        assert not np.isfinite(value) or f"<td>{value:.3f}</td>" in page  # NaN: too few random-label nets


def test_report_writes_the_ranking_and_shows_it(built):
    _, out, _, page = built
    ranking = pd.read_csv(os.path.join(out, "ranking.csv"))
    stats = pd.read_parquet(os.path.join(out, "stats.parquet"))
    assert set(ranking["group"]) == {"digits", "synthetic"} and set(ranking["target"]) == {"gap.accuracy", "gap.loss"}
    assert {"spearman_all", "spearman_true", "psi", "cmi", "rse_mean", "rse_worst", "rank_psi"} <= set(ranking.columns)
    same = stats[(stats["labels"] == "true")].merge(ranking, left_on=["hp.dataset", "target", "measure"],
                                                   right_on=["group", "target", "measure"])
    assert len(same) == len(ranking)  # the ranking's Spearman is the stats table's, not a second bootstrap
    np.testing.assert_allclose(same["spearman"], same["spearman_true"])
    assert "Ranking: the Jacobian norm among the field's measures" in page and "digits: against gap.accuracy" in page
    row = ranking[ranking["measure"] == "measure.jacobian_test"].iloc[0]
    assert f"{row['spearman_true']:.3f} [{int(row['rank_spearman_true'])}]" in page
    undefined = ranking["psi"].isna().all() and ranking["rse_mean"].isna().all()
    assert ("Per axis: psi_i" in page) == any(c.startswith("psi.") and ranking[c].notna().any()
                                               for c in ranking.columns)
    assert ("no two trials of this sweep do" in page) == undefined


def test_report_headline_states_measured_correlations_with_cis(built):
    _, out, _, page = built
    stats = pd.read_parquet(os.path.join(out, "stats.parquet"))
    with open(os.path.join(out, "headline.txt")) as handle:
        text = handle.read()
    assert "(gap.accuracy" in text.splitlines()[0]  # the default target
    for dataset in ("digits", "synthetic"):
        for measure in ("measure.jacobian_test", "measure.transitions_test"):
            for labels in ("all", "true"):
                row = stats[(stats["hp.dataset"] == dataset) & (stats["measure"] == measure)
                            & (stats["target"] == "gap.accuracy") & (stats["labels"] == labels)].iloc[0]
                expected = (f"Spearman {row.spearman:+.2f} [{row.spearman_lo:.2f}, {row.spearman_hi:.2f}], "
                            f"Kendall {row.kendall:+.2f} [{row.kendall_lo:.2f}, {row.kendall_hi:.2f}]")
                assert expected in text
    assert text.strip().splitlines()[1] in page  # the headline is on the page too


def test_report_says_what_was_dropped_and_describes_the_sweep(built):
    _, _, _, page = built
    assert "kept 40 of 43 trials" in page
    assert "not_fit: 2" in page and "error: 1" in page
    assert "<td>not_fit</td>\n      <td>2</td>" in page
    assert "<td>random_labels</td><td>2</td><td>0.0, 1.0</td>" in page  # swept factor, levels, values
    assert "2024-05-01 12:00:00+00:00 to 2024-05-01 12:42:00+00:00" in page


def test_sweep_metadata_counts_and_compute_time(built):
    results, _, _, _ = built
    trials = load_trials(results)
    meta = sweep_metadata(trials, trials.iloc[:5])
    assert meta["trials"] == 43 and meta["kept"] == 5 and meta["datasets"] == ["digits", "synthetic"]
    assert meta["swept"]["width"] == [2, 4, 8, 32, 128] and "lr" not in meta["swept"]
    assert meta["compute_s"] == pytest.approx(trials["time.total_s"].sum())


def test_headline_formats_and_missing_values():
    stats = pd.DataFrame([
        {"hp.dataset": "mnist", "measure": "measure.jacobian_test", "n": 12, "spearman": 0.5, "spearman_lo": 0.1,
         "spearman_hi": 0.8, "kendall": 0.4, "kendall_lo": 0.05, "kendall_hi": 0.7},
        {"hp.dataset": "mnist", "measure": "measure.transitions_test", "n": 12, "spearman": float("nan"),
         "spearman_lo": float("nan"), "spearman_hi": float("nan"), "kendall": float("nan"),
         "kendall_lo": float("nan"), "kendall_hi": float("nan")},
    ])
    text = headline(stats)
    assert "- mnist (12 nets): Jacobian norm (test): Spearman +0.50 [0.10, 0.80], Kendall +0.40 [0.05, 0.70]" in text
    assert "transitions (test ellipses): n/a (n = 12" in text
    assert "no trial was kept" in headline(pd.DataFrame(), 0)
    assert "1 kept trial" in headline(pd.DataFrame(), 1)


def test_region_trial_is_the_median_gap_relu_net_that_is_quick_to_recompute():
    rows = [{"trial_id": f"t{i}", "hp.nonlinearity": nl, "gap.loss": gap, "time.total_s": s}
            for i, (nl, gap, s) in enumerate([("relu", 0.1, 10), ("relu", 0.5, 10), ("relu", 0.9, 10),
                                              ("relu", 0.3, 9000), ("tanh", 0.4, 1)])]
    assert region_trial(pd.DataFrame(rows))["trial_id"] == "t1"
    assert region_trial(pd.DataFrame(rows[4:]))["trial_id"] == "t4"  # no ReLU net: any net
    assert region_trial(pd.DataFrame(rows[:0])) is None


def test_config_from_row_round_trips_the_trial_id():
    cfg = TrialConfig(dataset="digits", width=7, nonlinearity="hardtanh", augment=True, lr=0.01, n_test=100)
    row = pd.DataFrame([{**hp_record(cfg), "trial_id": cfg.trial_id}]).iloc[0]
    assert config_from_record(row) == cfg and config_from_record(row).trial_id == cfg.trial_id


def _one_trial(location: str, status: str = "ok", with_points: bool = False) -> None:
    cfg = TrialConfig(dataset="digits", width=8)  # n_test=1000 > digits' 500: recomputing it must fail
    record = {**hp_record(cfg), "trial_id": cfg.trial_id, "status": status, "gap.loss": 0.3,
              "measure.jacobian_test": 0.2, "measure.transitions_test": 5.0, "model.n_neurons": 16,
              "data.n_classes": 10, "train.accuracy": 1.0, "time.total_s": 2.0,
              "created_at": pd.Timestamp("2024-05-01", tz="UTC")}
    write_trial(location, cfg.trial_id, record, pd.DataFrame(), pd.DataFrame())


def test_one_trial_without_points_or_trajectories_still_renders(tmp_path):
    _one_trial(str(tmp_path))
    path = build_report(str(tmp_path), str(tmp_path / "report"), n_boot=50, log=lambda _: None)
    page = open(path, encoding="utf-8").read()
    assert "kept 1 of 1 trials" in page and "No trial was dropped." in page
    assert "No rank correlations: 1 kept trial" in page
    assert "No statistics" in page
    assert len(IMAGE.findall(page)) == 6  # each says on its face why it is (nearly) empty
    assert "No ranking: no measure with two distinct values" in page
    assert "Not drawn: recomputing trial" in page and "ConfigError" in page  # data split too small: no crash


def test_all_dropped_renders_without_figures(tmp_path):
    _one_trial(str(tmp_path), status="not_fit")
    page = open(build_report(str(tmp_path), str(tmp_path / "r"), log=lambda _: None), encoding="utf-8").read()
    assert "kept 0 of 1 trials" in page and "not_fit: 1" in page
    assert "every trial was dropped" in page and "no trial was kept" in page
    assert not IMAGE.findall(page)


def test_no_trials_is_a_report_error(tmp_path):
    with pytest.raises(ReportError, match="no trials under"):
        build_report(str(tmp_path), str(tmp_path / "r"))


def test_cli_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert run(parse([str(tmp_path / "missing")])) == 2
    assert run(parse([str(tmp_path)])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "does not exist" in err[0] and "no trials under" in err[1]


def test_cli_builds_the_report_and_prints_path_and_headline(built, tmp_path, capsys, monkeypatch):
    import analysis.report

    results, _, _, _ = built
    calls = []

    def fake_build_report(results_dir, out_dir, **options):  # the report itself is tested above
        calls.append((results_dir, out_dir, options))
        os.makedirs(out_dir)
        (tmp_path / "cli" / "headline.txt").write_text("Rank correlation ...\n- digits (20 nets): Spearman +0.61\n")
        return os.path.join(out_dir, "report.html")

    monkeypatch.setattr(analysis.report, "build_report", fake_build_report)
    out = tmp_path / "cli"
    assert run(parse([results, "--out", str(out), "--no-recompute", "--bootstrap", "50", "--data-root", "/d"])) == 0
    assert calls == [(results, str(out), {"data_root": "/d", "device": "cpu", "recompute": False, "n_boot": 50,
                                          "gap": "accuracy"})]
    printed = capsys.readouterr().out
    assert printed == f"report: {out / 'report.html'}\nRank correlation ...\n- digits (20 nets): Spearman +0.61\n"
    assert parse([results]).out is None and parse([results]).data_root is None


def test_end_to_end_with_real_trials_recomputes_figure_6(tmp_path):
    pytest.importorskip("sklearn")  # the digits data set
    from study import run_trial

    configs = [TrialConfig(dataset="digits", n_train=60, n_test=30, width=w, depth=3, lr=0.01, max_steps=300,
                           eval_every=10) for w in (8, 16, 32)]
    for cfg in configs:
        result = run_trial(cfg)
        assert result.status == "ok"
        result.write(str(tmp_path))
    page = open(build_report(str(tmp_path), str(tmp_path / "r"), n_boot=50, log=lambda _: None),
                encoding="utf-8").read()
    assert len(IMAGE.findall(page)) == 7  # figures 1-6 and 8
    assert "kept 3 of 3 trials" in page and "- digits (3 nets): Jacobian norm (test): Spearman" in page
    assert re.search(r"Trial [0-9a-f]{16} \(digits, relu, width (8|16|32), depth 3", page) and "Warning" not in page
    assert os.path.getsize(tmp_path / "r" / "fig6_linear_regions.pdf") > 2000


def test_report_opens_with_the_findings_and_writes_them(built):
    from analysis.findings import COLUMNS, findings_text
    from analysis.verdicts import VERDICT_RULE

    _, out, _, page = built
    table = pd.read_csv(os.path.join(out, "findings.csv"))
    assert list(table.columns) == COLUMNS and {"a", "a_true", "b_error", "c", "g", "h_rank"} <= set(table["finding"])
    with open(os.path.join(out, "findings.txt"), encoding="utf-8") as handle:
        assert handle.read().startswith("Findings of Novak et al. 2018")
    first_section = page.index("<h2>")
    assert page[first_section:].startswith("<h2>Findings of the reference study") and \
        page.index("Findings of the reference study") < page.index("<h2>Headline</h2>")
    assert html.escape(VERDICT_RULE) in page and 'class="fit findings"' in page
    for _, row in table.iterrows():
        assert f'<td class="{row["verdict"].replace(" ", "-")}">{row["verdict"]}</td>' in page
    assert findings_text(table).splitlines()[0]


def test_swept_factor_with_many_values_is_summarised():
    from analysis.report_html import MAX_LISTED, _meta_html

    meta = {"trials": 99, "kept": 99, "datasets": ["digits"], "first": None, "compute_s": 1.0,
            "swept": {"seed": list(range(27, 27 + 98)) + [9824], "width": [8, 16],
                      "nonlinearity": [f"nl{i}" for i in range(MAX_LISTED + 1)]}}
    text = _meta_html(meta, 0, 0)
    assert "<td>seed</td><td>99</td><td>99 values, 27..9824</td>" in text
    assert "<td>width</td><td>2</td><td>8, 16</td>" in text
    assert f"<td>{MAX_LISTED + 1} values: nl0, nl1, nl2, nl3, nl4, ...</td>" in text
