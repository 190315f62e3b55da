"""Where one preset's update spends its time: torch.profiler over a few updates, the top operators printed.

    python scripts/profile_step.py --preset iwslt14_deen --precision fp32 bf16 --steps 10   # on a GPU machine
    python scripts/profile_step.py --device cpu --preset iwslt14_deen --steps 2             # small model, CPU

Each precision runs the same batches from the same weights (the AdaNorm preset's model on the tiny preset's data, as
scripts/gpu_check.py builds it); prints ms per update and the operators with the most self time on the device (CPU
when the device is the CPU), so that a slow precision or norm shows which kernels it adds.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import REPO, compose  # noqa: E402  (also puts the repository on sys.path)

assert REPO


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--preset", default="iwslt14_deen", choices=("iwslt14_deen", "wmt14_ende", "enwik8"))
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--top", type=int, default=20)
    a = ap.parse_args()
    from torch.profiler import ProfilerActivity, profile

    from normexp.engine.job import build
    from normexp.engine.loggers import ConsoleLogger
    from normexp.engine.trainer import Trainer
    from normexp.records import RunRecord

    device = torch.device(a.device)
    objects = compose(a.preset, device, small=device.type != "cuda")
    torch.manual_seed(1)
    record = RunRecord(task=a.preset, model="m", norm="layernorm", seed=1, name="profile", profile="check", config={})
    task, model, _ = build(objects, device, record)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    batches = itertools.chain.from_iterable(task.train_batches(e) for e in itertools.count())
    groups = [[next(batches)] for _ in range(a.steps + 3)]
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    for precision in a.precision:
        model.load_state_dict(initial)
        cfg = dataclasses.replace(objects.trainer, precision=precision, update_freq=1)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(task, model, objects.optim, cfg, Path(tmp), record, ConsoleLogger())
            for group in groups[:3]:
                trainer.train_step(group)
            trainer.sync()
            torch.cuda.synchronize() if device.type == "cuda" else None
            with profile(activities=activities) as prof:
                started = time.perf_counter()
                for group in groups[3:]:
                    trainer.train_step(group)
                trainer.sync()
                torch.cuda.synchronize() if device.type == "cuda" else None
                seconds = time.perf_counter() - started
        print(f"\n## {a.preset} {precision}: {1000 * seconds / a.steps:.1f} ms per update (profiled)", flush=True)
        print(prof.key_averages().table(sort_by=sort, row_limit=a.top, max_name_column_width=60), flush=True)


if __name__ == "__main__":
    main()
