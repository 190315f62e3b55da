"""scripts/gpu_check.py runs on CPU (small sizes) and writes its JSON: every norm × dtype checked, timings, the
presets' steps at each precision and a 2-process DDP step."""
import json
import os
import subprocess
import sys

from tests.conftest import REPO


def test_gpu_check_on_cpu(tmp_path):
    out = tmp_path / "check.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "scripts/gpu_check.py", "--device", "cpu", "--out", str(out)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["ok"] and len(result["norms"]) == 20 and all(r["ok"] for r in result["norms"])
    assert {r["what"] for r in result["norm_timings"]} >= {"F.layer_norm", "F.rms_norm", "variant:adanorm"}
    assert {(r["preset"], r["precision"]) for r in result["steps"]} == {
        (f"adanorm/{p}", q) for p in ("iwslt14_deen", "wmt14_ende", "enwik8") for q in ("fp32", "bf16", "fp16")}
    assert all(r["ms_per_update"] > 0 for r in result["steps"]) and result["ddp"]["ranks_agree"]


def test_an_unknown_section_is_refused_in_one_line_before_any_work(tmp_path):
    out = tmp_path / "check.json"
    proc = subprocess.run([sys.executable, "scripts/gpu_check.py", "--device", "cpu", "--sections", "steps,stpes",
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and not out.exists()
    assert proc.stderr.strip().splitlines()[-1] == ("gpu_check.py: error: --sections: unknown stpes; choose from norms, "
                                                    "norm_timings, steps, ddp, norm_kernels, triton_breakdown, "
                                                    "compiled_step")
