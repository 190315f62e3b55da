"""scripts/bench_refine_rate.py: its copy of the kernel's rule, and a real training run counted end to end."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bench_refine_rate.py"
spec = importlib.util.spec_from_file_location("bench_refine_rate", SCRIPT)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_rule_flags_rows_far_from_the_previous_rows_mean():
    torch.manual_seed(0)
    x = torch.randn(1000, 64)
    assert not bench.refined_rows(x, threads=1).any()  # means ~ N(0, 1/64) against a std of 1
    # Means alternating 60 std apart: every row but the first (taken about 0, its own mean) is summed again.
    jumps = x + 60 * (torch.arange(1000) % 2).unsqueeze(1)
    assert bench.refined_rows(jumps, threads=1).tolist() == [False] + [True] * 999
    # A shared offset: only each thread's first row, taken about 0.  1000 rows of 64 floats, grain 512 rows: 2 chunks.
    offset = bench.refined_rows(x + 100, threads=2)
    assert offset.nonzero().flatten().tolist() == [0, 500]
    # One chunk when the rows fit in one task's grain, whatever the thread count.
    assert bench.refined_rows(x[:100] + 100, threads=8).nonzero().flatten().tolist() == [0]


def test_counts_the_norm_sites_of_a_real_training_run(tmp_path):
    # Run from tmp_path (nothing lands in the repo), so a relative data root (CI's ../shared/data) is made absolute.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NORMEXP_DATA_ROOT": os.path.abspath(os.environ["NORMEXP_DATA_ROOT"])}
    proc = subprocess.run([sys.executable, str(SCRIPT), "experiment=tiny/ptb", "norm=layernorm", "logger=console",
                           "trainer.progress=false", f"hydra.run.dir={tmp_path}"],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = proc.stdout.split("rows summed twice")[1]
    sites = [line for line in report.splitlines() if line.startswith("  site ")]
    assert len(sites) == 3 and all("(layernorm, H=200)" in s for s in sites), report  # the parser MLP's 3 norms
    total = report.split("all sites: ")[1].split()[0]
    refined, rows = map(int, total.split("/"))
    assert rows > 1000 and 0 <= refined <= rows
    assert (tmp_path / "run.json").is_file()
