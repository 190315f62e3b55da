"""scripts/bench_norms.py runs end to end and reports what it promises (its timings are not checked:
speed is measured by running the benchmark, never asserted in a test)."""
import subprocess
import sys
from pathlib import Path

from normexp.norms import VARIANTS, resolve

ROOT = Path(__file__).resolve().parents[2]
ROWWISE = [v for v in VARIANTS if resolve(v).rowwise]  # the row-statistics variants (not none, batchnorm, dyt, scalenorm)


def test_bench_norms_reports_every_variant_with_its_error_and_floor():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_norms.py"), "--rounds", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sections = proc.stdout.split("\n## ")[1:]
    assert [s.split(":")[0] for s in sections] == ["cpu fp32 8192x512", "cpu fp32 4096x1024", "cpu fp32 32768x128"]
    for section in sections:
        rows = {line.split()[0]: line.split() for line in section.splitlines()[2:]
                if line and not line.startswith(("add", "targets"))}
        assert set(rows) >= {"F.layer_norm", "F.rms_norm", *VARIANTS}
        for name in ROWWISE:
            # variant, ratio, min-max, floor, vs our LN, torch-ops, err, saved MB, extra MB
            _, ratio, _, floor, _, torch_ops, err, saved, _ = rows[name]
            assert float(ratio) > 0 and float(torch_ops) > 0
            assert float(err) <= 1e-5, (name, err)
        # DetachNorm saves no copy of x, so it moves 4 tensors instead of 5: a lower floor and ~0 MB saved.
        assert float(rows["detachnorm"][3]) < float(rows["layernorm"][3]) == float(rows["rmsnorm"][3])
        assert float(rows["detachnorm"][7]) < 1 < float(rows["layernorm"][7])
        # RMSNorm against our LayerNorm, timed in alternation with it (the RMSNorm paper's claim).
        paired = section.split("rmsnorm / our layernorm, paired: ")[1].split()[0]
        assert float(paired) > 0
        assert "targets (CPU" in section


def test_bench_norms_takes_other_shapes_and_names_a_bad_one():
    run = [sys.executable, str(ROOT / "scripts" / "bench_norms.py"), "--rounds", "1", "--shapes"]
    proc = subprocess.run([*run, "300x64,7x16"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [s.split(":")[0] for s in proc.stdout.split("\n## ")[1:]] == ["cpu fp32 300x64", "cpu fp32 7x16"]
    for bad in ("300by64", "300x8"):
        proc = subprocess.run([*run, bad], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 2 and "expected ROWSxH" in proc.stderr and bad in proc.stderr
