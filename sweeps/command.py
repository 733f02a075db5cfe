"""The `sensitivity` command: `trial` (one network), `sweep` (Ray Tune), `measure` (measures added to a finished
sweep, from its kept nets), `analyze` (figures and report).

It lives here, in the top layer, because it reaches all three: each subcommand is a module with
`add_arguments(parser)` and `run(args)` (study.cli, sweeps.cli, analysis.cli), imported only when it is
the command, so `sensitivity trial` does not pay for importing Ray. Bad input is one line on stderr and
exit status 2, before any work starts.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

with warnings.catch_warnings():  # a measure plugin that fails to import is refused by main() in one line
    warnings.simplefilter("ignore")
    from study.config import ConfigError
    from study.measures import PLUGIN_ERRORS

SUBCOMMANDS = {"trial": ("study.cli", "train and measure one network",
                         "Train one network to 100% train accuracy and write its three tables."),
               "sweep": ("sweeps.cli", "run a preset sweep of trials on Ray Tune", None),
               "measure": ("sweeps.measure_cli", "compute measures of a finished sweep from its kept nets, on Ray",
                           "Compute the measures a finished sweep lacks (or --measures NAMES) from its kept nets, "
                           "on Ray Tune, without training; rerun after a kill to finish."),
               "analyze": ("analysis.cli", "figures, statistics and report from a results directory", None)}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; a subcommand's module is imported only when it is the command."""
    parser = argparse.ArgumentParser(prog="sensitivity", description="Sensitivity vs generalization studies.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, text, description) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=text, description=description or text)
        if name == command:
            mod = importlib.import_module(module)
            mod.add_arguments(p)
            p.set_defaults(func=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        if PLUGIN_ERRORS:  # a measure module of SENSITIVITY_MEASURES that does not import
            raise ConfigError(PLUGIN_ERRORS[0])
        args = build_parser(command).parse_args(argv)
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"sensitivity {command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sensitivity {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
