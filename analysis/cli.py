"""`sensitivity analyze DIR`: build the report of a results directory; print its headline and findings.

    sensitivity analyze results/ [--out results/report] [--data-root ~/data] [--gap accuracy|loss]

`--gap` picks the target of the headline and of figures 1 and 4: the accuracy gap (gap.accuracy, the
test error of nets that fit their training set; the default) or the loss gap (gap.loss, nats).
stats.csv holds both either way.

The command itself (`sweeps.command`) wires this in with `add_arguments(parser)` and `run(args)`.
"""

from __future__ import annotations

import argparse
import os
import sys

from study.records import completed_trial_ids

GAPS = ("accuracy", "loss")  # analysis.strata.GAPS; spelled out here to keep pandas out of argument parsing


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", metavar="DIR", help="results directory (or s3:// URI) written by a sweep")
    parser.add_argument("--out", metavar="FIGDIR", default=None,
                        help="where to write report.html, the figures and stats.csv (default: DIR/report)")
    parser.add_argument("--data-root", default=None,
                        help="data sets for figure 6, which recomputes one trial (default: the sweep's default)")
    parser.add_argument("--device", default="cpu", help="device for the figure 6 recompute (default: cpu)")
    parser.add_argument("--no-recompute", action="store_true",
                        help="skip figure 6: no training, the report comes from the Parquet tables alone")
    parser.add_argument("--gap", choices=GAPS, default="accuracy",
                        help="target of the headline and figures 1 and 4: accuracy (gap.accuracy, the test error "
                             "at 100%% train accuracy; default) or loss (gap.loss, nats); stats.csv has both")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                        help="bootstrap resamples for the 95%% confidence intervals (default: 1000)")


def default_out(results: str) -> str:
    """DIR/report for a local directory; ./report-<last part> for an object-store URI."""
    if "://" in results:
        return os.path.join(os.getcwd(), "report-" + results.rstrip("/").rsplit("/", 1)[-1])
    return os.path.join(results, "report")


def run(args: argparse.Namespace) -> int:
    """Build the report; print where it is, the headline, the findings table and where the Jacobian norm
    ranks. 2 (one line on stderr) if there are no trials."""
    from analysis.findings import read_findings  # heavy imports only when the command runs
    from analysis.report import ReportError, build_report

    results = args.results
    if "://" not in results and not os.path.isdir(results):
        print(f"error: results directory {results} does not exist; pass the directory a sweep wrote into",
              file=sys.stderr)
        return 2
    try:
        if not completed_trial_ids(results):
            raise ReportError(f"no trials under {results} (no {results}/trials/*.parquet); run a sweep into it first")
        out = args.out or default_out(results)
        path = build_report(results, out, data_root=args.data_root, device=args.device,
                            recompute=not args.no_recompute, n_boot=args.bootstrap,
                            gap=getattr(args, "gap", "accuracy"))
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    with open(os.path.join(os.path.dirname(path), "headline.txt"), encoding="utf-8") as handle:
        print(handle.read().rstrip())
    print(read_findings(os.path.dirname(path)), end="")
    lines = ranking_lines(os.path.dirname(path))
    if lines:
        print("where the Jacobian norm ranks among the measures (ranking.csv, figure 8):")
        print("\n".join(f"  {line}" for line in lines))
    return 0


def ranking_lines(out: str) -> list[str]:
    """analysis.ranking.standing of the ranking.csv in `out` (nothing when it has no rows)."""
    import pandas as pd

    from analysis.ranking import standing

    path = os.path.join(out, "ranking.csv")
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.EmptyDataError):
        return []
    return standing(table) if len(table) else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sensitivity analyze", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
