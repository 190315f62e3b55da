"""Mean and variance of ∂ℓ/∂x at every norm input, over training (``trainer.grad_stats=true``).

The AdaNorm paper's Observation 2 is about these gradients: the derivative of the mean re-centres ∂ℓ/∂x (mean → 0), the
derivative of the std re-scales it (variance shrinks). For each norm site a tensor hook on its input records, on
logging steps only, the mean over rows of the row mean and of the (biased) row variance of ∂ℓ/∂x.
"""
from __future__ import annotations

from torch import nn


class GradStats:
    def __init__(self, model: nn.Module, sites: list[nn.Module]):
        names = {id(m): name for name, m in model.named_modules()}
        self.sites = {names.get(id(m), f"site{i}"): m for i, m in enumerate(sites)}
        self.active = False
        self.current: dict[str, dict[str, float]] = {}
        for name, module in self.sites.items():
            module.register_forward_pre_hook(self._hook(name))

    def _hook(self, name: str):
        def on_forward(module, args):
            x = args[0] if args else None
            if self.active and x is not None and x.requires_grad:
                x.register_hook(lambda g: self._record(name, g))

        return on_forward

    def _record(self, name: str, grad) -> None:
        g = grad.detach().float().flatten(0, -2) if grad.dim() > 1 else grad.detach().float()[None]
        # device tensors: read once the step is over (Trainer.sync), so the backward pass never waits for the host
        self.current[name] = {"mean": g.mean(-1).mean(), "var": g.var(-1, unbiased=False).mean()}

    def start_step(self, record: bool) -> None:
        self.active, self.current = record, {}

    def collect(self, step: int) -> dict | None:
        if not self.active or not self.current:
            return None
        return {"step": step, "sites": dict(self.current)}

    @staticmethod
    def read(entry: dict) -> dict:
        """A collected entry with its device values read as floats."""
        return {"step": entry["step"], "sites": {name: {k: float(v) for k, v in values.items()}
                                                 for name, values in entry["sites"].items()}}

