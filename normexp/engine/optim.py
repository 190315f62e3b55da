"""Optimizers and learning-rate schedules, built from ``OptimConfig``-shaped plain objects."""
from __future__ import annotations

import math

import torch
from torch import nn


def validate_optim(cfg) -> None:
    problems = []
    if cfg.name not in ("adam", "adamw", "sgd"):
        problems.append(f"optim.name={cfg.name!r} is not one of adam, adamw, sgd")
    if not cfg.lr > 0:
        problems.append(f"optim.lr={cfg.lr} must be > 0")
    if cfg.weight_decay < 0:
        problems.append(f"optim.weight_decay={cfg.weight_decay} must be >= 0")
    if cfg.schedule not in ("constant", "inverse_sqrt", "cosine", "linear"):
        problems.append(f"optim.schedule={cfg.schedule!r} is not one of constant, inverse_sqrt, cosine, linear")
    if cfg.warmup_steps < 0:
        problems.append(f"optim.warmup_steps={cfg.warmup_steps} must be >= 0")
    if cfg.schedule == "inverse_sqrt" and cfg.warmup_steps == 0:
        problems.append("optim.schedule=inverse_sqrt needs optim.warmup_steps > 0")
    if problems:
        raise ValueError("invalid optimizer settings: " + "; ".join(problems))


# Devices where Adam/AdamW take their fused kernel (one kernel for all parameters' updates instead of torch's foreach
# kernels; on CUDA it also reads GradScaler's inf flag on the device, so fp16 steps do not wait for the host).
# CPU: see scripts/bench_step.py for the measured effect.
FUSED_ADAM_DEVICES = ("cuda", "cpu")


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    validate_optim(cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    opt = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    fused = bool(params) and all(p.device.type in FUSED_ADAM_DEVICES and p.is_floating_point() for p in params)
    return opt(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, fused=fused or None)


def lr_factor(cfg, step: int, total_steps: int) -> float:
    """Multiplier of ``cfg.lr`` at update ``step`` (0-based). Warmup is linear from ``warmup_init_lr``."""
    warmup = cfg.warmup_steps
    if step < warmup:
        start = cfg.warmup_init_lr / cfg.lr
        return start + (1 - start) * step / warmup
    if cfg.schedule == "inverse_sqrt":  # fairseq: lr * sqrt(warmup / step) after warmup
        factor = math.sqrt(warmup / max(step, 1))
    elif cfg.schedule == "cosine":
        progress = (step - warmup) / max(1, total_steps - warmup)
        factor = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    elif cfg.schedule == "linear":
        factor = 1 - min(1.0, (step - warmup) / max(1, total_steps - warmup))
    else:
        factor = 1.0
    return max(factor, cfg.min_lr / cfg.lr)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(cfg, step, total_steps))
