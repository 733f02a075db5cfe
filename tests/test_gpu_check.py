"""benchmarks/gpu_check.py, dry run on the CPU (--small) with Ray made unimportable, as on a GPU image that
has no Ray: every section runs and writes its numbers to the results file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from no_ray import no_ray_pythonpath

ROOT = Path(__file__).resolve().parent.parent
FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.mark.skipif(not os.path.isdir(FASHION), reason="needs Debian's dataset-fashion-mnist")
def test_gpu_check_runs_every_section_without_ray(tmp_path):
    data = tmp_path / "fashion"
    data.mkdir()
    for name in os.listdir(FASHION):  # the files as they would travel with the checkout
        (data / name).symlink_to(os.path.join(FASHION, name))
    out = tmp_path / "results" / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": no_ray_pythonpath(tmp_path, str(ROOT))}
    proc = subprocess.run(["sh", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--small",
                           "--data-root", str(data), "--out", str(out), "--skip", "tests,fractional_2_pack"],
                          env={**env, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sections = json.loads(out.read_text())["sections"]
    assert set(sections) == {"env", "quick", "packed", "fractional_1", "fractional_2", "full_data", "paper_cost"}
    assert all(s["ok"] for s in sections.values()), sections
    assert sections["env"]["ray"] is None and sections["env"]["cuda_available"] in (True, False)
    assert sections["quick"]["trials"] >= 1 and sections["quick"]["trials_per_hour"] > 0
    assert [r["width"] for r in sections["packed"]["rows"]] == [16] and sections["packed"]["rows"][0]["speedup"] > 0
    four = sections["fractional_2"]
    assert four["processes"] == 2 and four["nets"] == 4 and len({w["pid"] for w in four["workers"]}) == 2
    assert sections["full_data"]["train.steps"] > 0 and sections["full_data"]["time.total_s"] > 0
    cost = sections["paper_cost"]
    assert cost["paper_gpu_hours"] > 0 and cost["steps_to_fit"] == sections["full_data"]["train.steps"]
    assert cost["paper_gpu_hours_at_max_steps"] >= cost["paper_gpu_hours"]


def test_gpu_check_refuses_cuda_without_a_device():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cuda"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "sees no CUDA device" in proc.stderr and "Traceback" not in proc.stderr


def test_no_section_starts_past_the_budget(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--small",
                           "--budget-s", "0", "--out", str(out), "--skip", "env"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(out.read_text())
    assert found["sections"] == {} and found["skipped_for_budget"][:2] == ["tests", "quick"]
    assert found["skipped_for_budget"][-1] == "paper_cost"
