"""``trainer.precision``: what the loss runs in, and how its gradients reach the optimizer.

- ``fp32``: float32 everywhere; on CUDA TF32 is switched off (strict fp32, torch's default for matmuls).
- ``tf32``: float32 tensors, CUDA matmuls and convolutions in TF32 (no effect on CPU, where it runs as fp32).
- ``bf16``: autocast to bfloat16 (CUDA and CPU); weights, optimizer state and gradients stay float32.
- ``fp16``: autocast to float16 with a GradScaler (the loss is scaled up before backward, the gradients unscaled
  before clipping, steps with inf/nan gradients skipped, the scale adapted); the scaler's state is checkpointed.

The norms compute their statistics in float32 whatever the input dtype (normexp.norms: reference.py casts up,
torch's layer_norm/rms_norm kernels accumulate in float32), and every task's loss is a float32 cross-entropy.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterable

import torch
from torch import nn

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(name: str) -> None:
    if name not in PRECISIONS:
        raise ValueError(f"trainer.precision={name!r} is not one of {', '.join(PRECISIONS)}")


class Precision:
    def __init__(self, name: str, device: torch.device):
        check_precision(name)
        self.name, self.device_type, self.dtype = name, device.type, _AUTOCAST.get(name)
        self.scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None
        if device.type == "cuda":  # process-wide switches: set for this run's precision either way
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = name == "tf32"
            # torch 2.11 sends masked bf16/fp16 attention (fairseq's MultiheadAttention) to cuDNN first, and cuDNN
            # builds a plan for every new (batch, length) shape: the IWSLT preset's bf16 update took 588 ms against
            # 60 ms in fp32 on an H200, of which 11 ms on the GPU (scripts/profile_step.py, 2026-12-04). The flash and
            # memory-efficient kernels need no plan. (Known upstream: modelscope/FunASR#3704.)
            torch.backends.cuda.enable_cudnn_sdp(False)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context the forward passes (training loss and evaluation) run in."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer, params: Iterable[nn.Parameter], clip_norm: float) -> None:
        """Clip (on the true, unscaled gradients) and step; under fp16 a step with non-finite gradients is skipped."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        if clip_norm > 0:
            nn.utils.clip_grad_norm_(params, clip_norm)
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
