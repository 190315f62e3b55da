"""A normalization of the user's own: any importable class or factory, named by its dotted path (``norm.target``).

``target(dim, **options)`` must return an ``nn.Module`` that maps a (..., dim) tensor to one of the same shape. The
factory made here imports the target and builds it once on a probe tensor, so that a missing module, something not
callable, a wrong return type or a module of the wrong width fails when the factory is made (the CLI does that before
any run folder exists), in one line naming the target. Every module it builds is marked with its width, so that
`swap_norms` recognises it as a norm site again and the grad-stats hook, checkpoints and run records treat it like a
built-in variant.
"""
from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from typing import Any, Callable

import torch
from torch import nn

from .spec import VARIANTS

PROBE_WIDTH = 64  # the width the target is built at once, to check it; norms must accept any width
WIDTH_ATTR = "_normexp_width"  # set on every module a target builds: swap_norms reads the site's width from it


class PluginError(ValueError):
    """A norm target that cannot be used; the message names the target and what is wrong."""


def default_name(target: str) -> str:
    """The record's norm name when none is given: the target's last component (``mypkg.norms.MyNorm`` → ``MyNorm``)."""
    return str(target).replace(":", ".").rsplit(".", 1)[-1]


def load_target(target: str) -> Callable[..., Any]:
    """The object ``target`` names: ``package.module.Name`` or ``package.module:Name`` (nested attributes too)."""
    text = str(target).strip()
    if ":" in text:
        module_name, _, attrs = text.partition(":")
    else:
        module_name, _, attrs = text.rpartition(".")
    if not module_name or not attrs:
        raise PluginError(f"norm.target={target}: give a dotted path such as mypkg.norms.MyNorm")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise PluginError(f"norm.target={target}: cannot import module {module_name!r} ({e}); put the folder that "
                          "holds it on PYTHONPATH or pip-install it") from e
    for attr in attrs.split("."):
        if not hasattr(obj, attr):
            raise PluginError(f"norm.target={target}: {obj.__name__ if hasattr(obj, '__name__') else obj!r} "
                              f"has no attribute {attr!r}")
        obj = getattr(obj, attr)
    if not callable(obj):
        raise PluginError(f"norm.target={target}: {type(obj).__name__} is not callable; name a class or a function "
                          "taking (dim, **options) and returning an nn.Module")
    return obj


def build_plugin(target: str, dim: int, **options) -> nn.Module:
    """``target(dim, **options)``, checked to be a module and marked as a norm site of width ``dim``."""
    module = load_target(target)(dim, **options)
    if not isinstance(module, nn.Module):
        raise PluginError(f"norm.target={target}: returned {type(module).__name__!r}, not an nn.Module")
    setattr(module, WIDTH_ATTR, dim)
    return module


def probe(target: str, options: dict) -> None:
    """Builds the target once at ``PROBE_WIDTH`` and checks that it keeps the shape of a (2, 3, width) input."""
    try:
        module = build_plugin(target, PROBE_WIDTH, **options)
    except PluginError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's code: any failure is reported in one line
        raise PluginError(f"norm.target={target}: building it as target({PROBE_WIDTH}, **{options}) failed: "
                          f"{type(e).__name__}: {e}") from e
    x = torch.randn(2, 3, PROBE_WIDTH)
    try:
        with torch.no_grad():
            y = module(x)
    except Exception as e:  # noqa: BLE001
        raise PluginError(f"norm.target={target}: built at width {PROBE_WIDTH}, its forward on a {tuple(x.shape)} "
                          f"input failed ({type(e).__name__}: {e}); does it use the width it is given?") from e
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise PluginError(f"norm.target={target}: built at width {PROBE_WIDTH}, it maps a {tuple(x.shape)} input "
                          f"to {got}; a norm must return a tensor of its input's shape")


def plugin_factory(target: str, name: str, options: dict) -> Callable[[int], nn.Module]:
    """A picklable ``factory(dim) -> nn.Module`` for ``target``, checked now (import, build, probe forward)."""
    if not name or name in VARIANTS:
        raise PluginError(f"norm.target={target}: norm.name={name!r} "
                          f"{'is a built-in variant' if name else 'is empty'}; give the custom norm its own name "
                          "(norm=custom derives it from the target, or set norm.name=...)")
    if options is not None and not isinstance(options, Mapping):
        raise PluginError(f"norm.target={target}: norm.options must be a mapping such as {{alpha: 0.5}}, got {options!r}")
    options = dict(options or {})
    probe(target, options)
    return functools.partial(build_plugin, target, **options)
