"""Step time of the trainer on the IWSLT smoke model (``experiment=tiny/iwslt14_deen``), variants side by side in one
process: the loop as on ``main`` (a host read of the loss per batch, a Python loop rescaling gradients for
``update_freq``, Adam without its fused kernel) against this one (losses kept on the device, ``torch._foreach_mul_``,
fused Adam), with the fused kernel switched off to show its share, and fp32 against bf16 autocast.

    python scripts/bench_step.py                       # CPU, 1 thread, 20 timed updates per variant, 3 rounds
    python scripts/bench_step.py --device cuda --steps 50

"main" is ``git show main:normexp/engine/{trainer,distributed,optim}.py`` loaded into a temporary package (so the
script needs the git checkout); every variant trains the same weights on the same batches. Rounds alternate the
variants' order (ABBA). On CPU the clock is the process's CPU time (with one thread it is the step's work, and it
does not count the time a shared machine gives to others); on CUDA wall time after a synchronize. The printed figure is the median over rounds of each variant's mean step time, and its
ratio to main at the same update_freq.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
OLD_MODULES = ("trainer", "distributed", "optim")


def load_main_engine(tmp: Path):
    """``main``'s trainer (with its own distributed and optim modules) as the package ``engine_main``."""
    package = tmp / "engine_main"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in OLD_MODULES:
        text = subprocess.run(["git", "show", f"main:normexp/engine/{name}.py"], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout
        for module in OLD_MODULES:
            text = text.replace(f"normexp.engine.{module}", f"engine_main.{module}")
        text = text.replace("from normexp.engine import distributed", "from engine_main import distributed")
        (package / f"{name}.py").write_text(text)
    sys.path.insert(0, str(tmp))
    return importlib.import_module("engine_main.trainer")


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir
    from omegaconf import OmegaConf

    from normexp.cli.config import register_configs

    register_configs()
    with initialize_config_dir(str(REPO / "conf"), version_base=None):
        cfg = hydra_compose("config", overrides=["experiment=tiny/iwslt14_deen", *overrides])
    return OmegaConf.to_object(cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20, help="timed updates per variant and round")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from normexp.engine import optim as new_optim
    from normexp.engine.job import build
    from normexp.engine.loggers import ConsoleLogger
    from normexp.engine.trainer import Trainer
    from normexp.records import RunRecord

    objects = compose([f"trainer.device={a.device}", "trainer.progress=false"])
    device = torch.device(a.device)
    torch.manual_seed(1)
    record = RunRecord(task="bench", model="m", norm="layernorm", seed=1, name="bench", profile="tiny", config={})
    task, model, _ = build(objects, device, record)
    initial = copy.deepcopy(model.state_dict())
    batches = [b for _, b in zip(range(a.steps * 2 + 4), task.train_batches(0))]

    tmp = Path(tempfile.mkdtemp(prefix="bench_step-"))
    old = load_main_engine(tmp)

    def variant(label: str, update_freq: int, precision: str = "fp32", loop: str = "new", fused: bool = True):
        def make():  # main's trainer reads only the settings it knows
            model.load_state_dict(initial)
            new_optim.FUSED_ADAM_DEVICES = ("cuda", "cpu") if fused else ()
            trainer_cfg = dataclasses.replace(objects.trainer, update_freq=update_freq, precision=precision)
            cls = Trainer if loop == "new" else old.Trainer
            return cls(task, model, objects.optim, trainer_cfg, tmp / label, record, ConsoleLogger())
        return label, update_freq, loop, make

    variants = [variant("main fp32", 1, loop="main"), variant("new fp32", 1),
                variant("new fp32, unfused Adam", 1, fused=False), variant("new bf16", 1, precision="bf16"),
                variant("main fp32 update_freq=2", 2, loop="main"), variant("new fp32 update_freq=2", 2)]
    times: dict[str, list[float]] = {label: [] for label, *_ in variants}
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    for r in range(a.rounds):
        for label, update_freq, loop, make in (variants if r % 2 == 0 else variants[::-1]):
            trainer = make()
            groups = [batches[i * update_freq:(i + 1) * update_freq] for i in range(a.steps + 2)]
            for group in groups[:2]:  # warm-up: allocator, optimizer state
                trainer.train_step(group)
            _synchronize(trainer, device)
            started = clock()
            for group in groups[2:]:
                trainer.train_step(group)
            _synchronize(trainer, device)
            times[label].append((clock() - started) / a.steps)
    print(f"IWSLT smoke model, device={a.device}, threads={a.threads}, {a.steps} updates x {a.rounds} rounds, "
          f"median of the rounds' mean step time ({'CPU' if device.type == 'cpu' else 'wall'} time):")
    for label, update_freq, loop, _ in variants:
        t = statistics.median(times[label])
        base = statistics.median(times[f"main fp32{' update_freq=2' if update_freq == 2 else ''}"])
        print(f"  {label:28s} {1000 * t:8.1f} ms/step   {t / base:5.3f} x main")
    print(f"  bf16 / fp32 (new loop): {statistics.median(times['new bf16']) / statistics.median(times['new fp32']):.3f}")


def _synchronize(trainer, device: torch.device) -> None:
    if hasattr(trainer, "sync"):
        trainer.sync()
    if device.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
