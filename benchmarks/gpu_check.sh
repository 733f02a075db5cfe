#!/bin/sh
# Every GPU check (benchmarks/gpu_check.py) from a plain source checkout, on the image's own Python and torch:
# nothing is installed and Ray is not needed. Arguments go to gpu_check.py; by default the data come from
# data/fashion-mnist (copy /usr/share/datasets/fashion-mnist/*.gz there: about 30 MB) and the results go to
# gpu_check.json. PYTHON picks the interpreter (default: python3).
#   benchmarks/gpu_check.sh [--data-root DIR] [--out FILE] [--device cuda] [--skip SECTIONS]
set -e
cd "$(dirname "$0")/.."
case " $* " in *" --data-root "*) ;; *) set -- --data-root data/fashion-mnist "$@" ;; esac
PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
