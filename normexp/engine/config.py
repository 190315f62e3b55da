"""The engine's settings (optimizer, loop, logger) as plain dataclasses; the CLI registers them as Hydra schemas."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class OptimConfig:
    name: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    momentum: float = 0.9  # sgd only
    schedule: str = "constant"  # constant | inverse_sqrt | cosine | linear
    warmup_steps: int = 0
    warmup_init_lr: float = 0.0  # lr at step 0 of the warmup (fairseq's --warmup-init-lr)
    min_lr: float = 0.0
    clip_norm: float = 0.0  # 0: no gradient clipping


@dataclass
class TrainerConfig:
    max_epochs: int = 10
    max_steps: int = 0  # 0: no limit; else stop after this many updates
    update_freq: int = 1  # one update from this many consecutive batches: summed loss / summed units (--update-freq)
    eval_every_steps: int = 0  # 0: evaluate on valid at the end of each epoch
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch intra-op threads; 0: torch's default
    loss_ceiling: float = 1.0e4  # a training loss above this (or non-finite) marks the run diverged
    deterministic: bool = False  # torch.use_deterministic_algorithms (bitwise-repeatable on CPU)
    progress: bool = True  # tqdm progress bar with the running loss
    log_every_steps: int = 50
    checkpoint_every_steps: int = 0  # 0: checkpoint at epoch ends only
    keep_checkpoints: int = 2  # last K step/epoch checkpoints kept besides best
    resume: str = "auto"  # auto: continue from the run dir's checkpoint if there is one | never
    grad_stats: bool = False  # record mean/var of dloss/dx at every norm input
    average_last: int = 0  # >0: test the average of the last N checkpoints' weights instead of the best (fairseq-style)
    precision: str = "fp32"  # fp32 | tf32 (CUDA matmuls) | bf16 | fp16 (autocast; fp16 with a GradScaler): precision.py
    compile: bool = False  # torch.compile the model the training loss runs through (evaluation stays eager)


@dataclass
class LoggerConfig:
    name: str = "console"  # console | wandb
    project: str = "normexp"
    entity: Optional[str] = None
    mode: str = "offline"  # wandb mode: offline (default) | online | disabled
    group: Optional[str] = None  # default: the experiment name
