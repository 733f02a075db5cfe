"""The `sensitivity` command: `trial` (one network), `sweep` (Ray Tune), `analyze` (figures and report).

Bad input is one line on stderr and exit status 2, before any work starts.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from study.config import ConfigError, TrialConfig, parse_assignment


def _trial_parser(sub) -> None:
    p = sub.add_parser("trial", help="train and measure one network",
                       description="Train one network to 100%% train accuracy and write its three tables.")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a TrialConfig field (repeatable), e.g. --set width=256 --set dataset=fashion_mnist")
    p.add_argument("--out", default="results/trials", help="output directory or s3:// URI (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--data-root", default=None, help="where data sets live (default: $SENSITIVITY_DATA_ROOT "
                   "or ~/.cache/sensitivity-study/data)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_trial_command)


def config_from_sets(assignments: list[str]) -> TrialConfig:
    values = dict(parse_assignment(a) for a in assignments)
    return TrialConfig.from_dict(values)


def run_trial_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from study.raw_data import check_available, check_sizes
    from study.records import check_writable
    from study.resources import check_memory, resolve_device
    from study.trial import run_trial

    cfg = config_from_sets(args.set)
    device = resolve_device(args.device)
    check_memory(cfg, device)
    check_sizes(cfg)
    check_available(cfg.dataset, args.data_root)
    check_writable(args.out)
    bar = tqdm(total=cfg.max_steps, desc=f"trial {cfg.trial_id}", unit="step", disable=args.no_progress,
               dynamic_ncols=True)

    def progress(steps: int, loss: float, acc: float) -> None:
        bar.update(steps - bar.n)
        bar.set_postfix(loss=f"{loss:.4f}", train_acc=f"{acc:.4f}")
        if acc >= cfg.target_accuracy:  # training is done: the measures follow
            bar.total = steps
            bar.set_description(f"trial {cfg.trial_id} fit; measuring")
            bar.refresh()

    result = run_trial(cfg, device=device, data_root=args.data_root, threads=args.threads, progress=progress)
    bar.close()
    result.write(args.out)
    print(summary(result.record))
    print(f"wrote trials/, points/, trajectories/{cfg.trial_id}.parquet under {args.out}")
    return 0 if result.status != "error" else 1


def summary(record: dict) -> str:
    """A few lines a person reads after one trial."""
    def num(key: str, fmt: str = ".4f") -> str:
        value = record.get(key)
        return "-" if value is None else format(value, fmt)
    lines = [
        f"trial {record['trial_id']}: status={record['status']}"
        + (f" ({record['error']})" if record.get("error") else ""),
        f"  data {record['hp.dataset']} n_train={record['hp.n_train']} | net {record['hp.width']}x{record['hp.depth']} "
        f"{record['hp.nonlinearity']} | {record['hp.optimizer']} lr={record['hp.lr']} | steps {record.get('train.steps', '-')}",
        f"  train acc {num('train.accuracy')}  test acc {num('test.accuracy')}  "
        f"loss gap {num('gap.loss')}  acc gap {num('gap.accuracy')}",
        f"  jacobian test {num('measure.jacobian_test')}  train {num('measure.jacobian_train')}  "
        f"| transitions test {num('measure.transitions_test', '.1f')}  train {num('measure.transitions_train', '.1f')}",
        f"  time: train {num('time.train_s', '.1f')} s, measures {num('time.measure_s', '.1f')} s",
    ]
    return "\n".join(lines)


_DELEGATED = {"sweep": ("sweeps.cli", "run a preset sweep of trials on Ray Tune"),
              "analyze": ("analysis.cli", "figures, statistics and report from a results directory")}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; `sweep` and `analyze` import their (heavier) modules only when they are the command."""
    parser = argparse.ArgumentParser(prog="sensitivity", description="Sensitivity vs generalization studies.")
    sub = parser.add_subparsers(dest="command", required=True)
    _trial_parser(sub)
    for name, (module, text) in _DELEGATED.items():
        p = sub.add_parser(name, help=text, description=text)
        if name == command:
            mod = importlib.import_module(module)
            mod.add_arguments(p)
            p.set_defaults(func=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(next((a for a in argv if not a.startswith("-")), None)).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"sensitivity {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sensitivity {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
