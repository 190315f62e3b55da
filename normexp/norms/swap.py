"""`swap_norms`: put a variant into an existing model in place of its normalization modules."""
from __future__ import annotations

import math
import re
from typing import Callable

from torch import Tensor, nn

from .dispatch import check_impl
from .plugin import WIDTH_ATTR
from .spec import resolve
from .variants import NORM_TYPES, build_norm

# Third-party norms recognised by class name: fairseq's/apex's FusedLayerNorm, Fp32LayerNorm,
# Hugging Face's LlamaRMSNorm/T5LayerNorm/..., apex FusedRMSNorm, lancopku's LayerNormImpl.
_NAME = re.compile(r"(LayerNorm|RMSNorm)(Impl)?$", re.IGNORECASE)


def _is_norm(m: nn.Module) -> bool:
    if isinstance(m, (nn.LayerNorm, nn.RMSNorm) + NORM_TYPES) or hasattr(m, WIDTH_ATTR):  # built-in or custom
        return True
    # A normalization layer is a leaf; this keeps e.g. a "...LayerNorm" block container out.
    return bool(_NAME.search(type(m).__name__)) and not any(True for _ in m.children())


def _shape(m: nn.Module) -> tuple[int, ...]:
    """The normalized (trailing) shape of a norm module."""
    shape = getattr(m, "normalized_shape", None) or getattr(m, WIDTH_ATTR, None)
    if shape is None:
        w = getattr(m, "weight", None)
        if isinstance(w, Tensor) and w.dim() >= 1:
            shape = tuple(w.shape)
        else:
            shape = next((getattr(m, a) for a in ("dim", "hidden_size", "hidden", "d")
                          if isinstance(getattr(m, a, None), int)), None)
    if shape is None:
        raise ValueError(f"swap_norms: cannot tell the width of {type(m).__name__}; "
                         "it has no normalized_shape, 1-D weight, dim or hidden_size")
    return (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)


class FlattenLast(nn.Module):
    """Applies a last-dim norm to the trailing `shape` flattened into one dimension, which is what
    a torch LayerNorm with a multi-dimensional normalized_shape computes."""

    def __init__(self, shape: tuple[int, ...], norm: nn.Module):
        super().__init__()
        self.shape, self.norm = tuple(shape), norm

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[: x.dim() - len(self.shape)]
        return self.norm(x.reshape(*lead, -1)).view(x.shape)


def _noop_pre_hook(module, args):
    return None


def _keep_python_path(model: nn.Module) -> None:
    """torch's TransformerEncoderLayer/TransformerEncoder have a fused inference path (eval mode,
    no grad) that hard-codes LayerNorm with norm1/norm2's weight and bias.  It would silently
    compute a LayerNorm instead of the swapped variant (or fail).  A forward pre-hook on the layer
    is one of the documented conditions that disable it; nested tensors are turned off likewise."""
    for m in model.modules():
        if isinstance(m, nn.TransformerEncoderLayer) and not getattr(m, "_normexp_python_path", False):
            if not (isinstance(m.norm1, nn.LayerNorm) and isinstance(m.norm2, nn.LayerNorm)):
                m.register_forward_pre_hook(_noop_pre_hook)
                for norm in (m.norm1, m.norm2):  # its fast-path check reads norm.eps: a custom norm may have none
                    if not hasattr(norm, "eps"):
                        norm.eps = None
                m._normexp_python_path = True
        if isinstance(m, nn.TransformerEncoder) and len(m.layers) and getattr(m.layers[0], "_normexp_python_path", False):
            m.use_nested_tensor = False


def swap_norms(model: nn.Module, name: str, **options) -> int:
    """Replace, in place, every normalization module of `model` with variant `name`.

    Recognised: torch nn.LayerNorm (and subclasses such as fairseq's Fp32LayerNorm) and
    nn.RMSNorm, any leaf module whose class name ends in LayerNorm/RMSNorm (fairseq/apex
    FusedLayerNorm, Hugging Face RMSNorm/T5LayerNorm, ...), and normexp's own variants and the custom
    norms its factories build (norm.target), so swapping twice works.  Each replacement has the old module's width, device, floating dtype and train/eval
    mode and freshly initialised parameters (gain 1, bias 0); the old eps is not carried over: the
    variant's options decide everything.  A module registered at several places is replaced by one
    shared new module.  Returns the number of sites (parent attributes) replaced.
    """
    impl = options.pop("impl", "auto")  # which implementation runs them (dispatch.py), not a statistic
    resolve(name, **options)  # fail on bad options before touching the model
    check_impl(impl)
    return swap_norms_with(model, lambda width: build_norm(name, width, impl=impl, **options))


def swap_norms_with(model: nn.Module, make: Callable[[int], nn.Module]) -> int:
    """`swap_norms` with the new modules built by `make(width)`, e.g. a run's norm factory (which counts and keeps
    the modules it builds, so a model that builds its norms inline, like fairseq's, still reports every site).

    `make` is called once per distinct old module with its normalized width (a multi-dimensional shape is flattened
    into one row and the result wrapped in `FlattenLast`); the returned module is then moved to the old one's device
    and floating dtype and put in its train/eval mode.  Returns the number of sites (parent attributes) replaced.
    """
    if _is_norm(model):
        raise ValueError("swap_norms: the model itself is a normalization module; use build_norm")
    new_for: dict[int, nn.Module] = {}
    sites = 0
    for parent in list(model.modules()):
        for attr, child in list(parent._modules.items()):
            if child is None or not _is_norm(child):
                continue
            if id(child) not in new_for:
                new_for[id(child)] = _replacement(child, make, parent, model)
            parent._modules[attr] = new_for[id(child)]
            sites += 1
    _keep_python_path(model)
    return sites


def _replacement(old: nn.Module, make: Callable[[int], nn.Module], parent: nn.Module, model: nn.Module) -> nn.Module:
    shape = _shape(old)
    new = make(math.prod(shape))
    if len(shape) > 1:
        new = FlattenLast(shape, new)
    # Device and dtype from the old module, or, if it holds no tensors (no affine), from its parent, else the model.
    # Module.to works in place, so a factory that keeps the module it built still holds the one the model uses.
    ref = next((t for mod in (old, parent, model) for t in (*mod.parameters(), *mod.buffers())), None)
    if ref is not None:
        new = new.to(device=ref.device, dtype=ref.dtype if ref.is_floating_point() else None)
    return new.train(old.training)
