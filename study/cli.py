"""`sensitivity trial --set FIELD=VALUE ...`: train and measure one network, write its three tables.

The command itself (`sweeps.command`) wires this in with `add_arguments(parser)` and `run(args)`, like
`sweep` and `analyze`. Bad input is one line on stderr and exit status 2, before any work starts.
"""

from __future__ import annotations

import argparse

from study.config import TrialConfig, parse_assignment


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a TrialConfig field (repeatable), e.g. --set width=256 --set dataset=fashion_mnist")
    p.add_argument("--out", default="results/trials", help="output directory or s3:// URI (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--data-root", default=None, help="where data sets live (default: $SENSITIVITY_DATA_ROOT "
                   "or ~/.cache/sensitivity-study/data)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--keep-models", action=argparse.BooleanOptionalAction, default=True,
                   help="keep the trained net as models/<trial_id>.safetensors, so measures can be added later "
                        "(`sensitivity measure`); default: keep")
    add_skip_argument(p)


def add_skip_argument(p: argparse.ArgumentParser) -> None:
    """--skip-measures, shared by `trial` and `sweep`."""
    from study import measures

    p.add_argument("--skip-measures", default=None, metavar="NAMES",
                   help="comma-separated measures not to run now (their columns stay empty, the rest is the "
                        "same); `sensitivity measure DIR` computes them later from the kept nets. Registered: "
                        f"{', '.join(measures.MEASURES)}")


def skipped_measures(args: argparse.Namespace) -> tuple[str, ...]:
    """The --skip-measures names, checked (ConfigError naming an unknown one); () when not given."""
    from study import measures

    return tuple(measures.parse_names(args.skip_measures, "--skip-measures") or ())


def config_from_sets(assignments: list[str]) -> TrialConfig:
    values = dict(parse_assignment(a) for a in assignments)
    return TrialConfig.from_dict(values)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from study.raw_data import check_available, check_sizes
    from study.records import check_writable
    from study.resources import check_memory, resolve_device
    from study.trial import run_trial

    cfg = config_from_sets(args.set)
    skip = skipped_measures(args)
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

    result = run_trial(cfg, device=device, data_root=args.data_root, threads=args.threads, progress=progress,
                       skip_measures=skip)
    bar.close()
    result.write(args.out, keep_model=args.keep_models)
    print(summary(result.record))
    kept = f" and models/{cfg.trial_id}.safetensors" if args.keep_models and result.model is not None else ""
    print(f"wrote trials/, points/, trajectories/{cfg.trial_id}.parquet{kept} under {args.out}")
    if skip and result.status in ("ok", "not_fit"):
        print(f"skipped {', '.join(skip)}: " + (f"`sensitivity measure {args.out}` computes them from the kept net"
                                                 if kept else "the net was not kept, so they cannot be added later"))
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
