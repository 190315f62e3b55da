"""Every option with a set of choices or a valid range, checked on the composed config before Hydra makes a folder.

Hydra itself refuses a misspelled key, a wrong type and an unknown group choice. What it cannot know — that
``optim.schedule`` is one of four names, that ``norm.C`` must be positive, that ``task.fold`` is 0..9 — is listed
here, once, and checked by ``check_config`` from the Hydra callbacks (``callbacks.py``) for a run and for every job of
a sweep, before any run dir, record or training exists. A bad value ends the program with one line naming the key,
the value and what is valid (exit code 2). Norm options are checked by the norms' own ``resolve``; checks that need the
data (``task.valid_size`` below the split's size) stay with the tasks.

A rule applies where its key exists: ``task.split`` only for tasks that have a split.
"""
from __future__ import annotations

import math
import re
from typing import Any

from normexp.engine.distributed import resolve_device
from normexp.engine.precision import PRECISIONS
from normexp.models.fairseq_transformer import INITS
from normexp.models.parser_mlp import ACTIVATIONS
from normexp.norms import norm_factory
from normexp.norms.dispatch import IMPLS, triton_takes_device

PROFILES = ("full", "tiny")


class ConfigError(ValueError):
    """A value outside its choices or range; the message is the one line the user sees."""


# key -> the valid values (a tuple) or a range "lo <= x", "0 <= x < 1", ... (see ``_in_range``)
RULES: dict[str, Any] = {
    "profile": PROFILES,
    "seed": "0 <= x < 4294967296",
    # optim
    "optim.name": ("adam", "adamw", "sgd"),
    "optim.schedule": ("constant", "inverse_sqrt", "cosine", "linear"),
    "optim.lr": "0 < x",
    "optim.weight_decay": "0 <= x",
    "optim.betas": "0 <= x < 1",
    "optim.momentum": "0 <= x < 1",
    "optim.warmup_steps": "0 <= x",
    "optim.warmup_init_lr": "0 <= x",
    "optim.min_lr": "0 <= x",
    "optim.clip_norm": "0 <= x",
    # trainer
    "trainer.max_epochs": "1 <= x",
    "trainer.max_steps": "0 <= x",
    "trainer.update_freq": "1 <= x",
    "trainer.eval_every_steps": "0 <= x",
    "trainer.device": ("auto", "cpu", "cuda", "cuda:N", "mps"),
    "trainer.threads": "0 <= x",
    "trainer.loss_ceiling": "0 < x",
    "trainer.log_every_steps": "0 <= x",
    "trainer.checkpoint_every_steps": "0 <= x",
    "trainer.keep_checkpoints": "1 <= x",
    "trainer.resume": ("auto", "never", "restart"),
    "trainer.precision": PRECISIONS,
    "trainer.average_last": "0 <= x",
    "norm.impl": IMPLS,
    # logger
    "logger.name": ("console", "wandb"),
    "logger.mode": ("offline", "online", "disabled"),
    # tasks (a rule applies to the tasks that have the key)
    "task.train_size": "0 <= x",
    "task.valid_size": "1 <= x",
    "task.test_size": "0 <= x",
    "task.batch_size": "1 <= x",
    "task.eval_batch_size": "1 <= x",
    "task.max_len": "1 <= x",
    "task.min_freq": "1 <= x",
    "task.word_dropout": "0 <= x < 1",
    "task.split": ("fixed", "cv10"),
    "task.fold": "0 <= x <= 9",
    "task.source": ("sample", "conll"),
    "task.min_word_count": "1 <= x",
    "task.tgt_len": "1 <= x",
    "task.eval_tgt_len": "1 <= x",
    "task.eval_mem_len": "0 <= x",
    "task.valid_tokens": "0 <= x",
    "task.bpe_merges": "0 <= x",
    "task.dict_threshold": "0 <= x",
    "task.max_tokens": "1 <= x",
    "task.label_smoothing": "0 <= x < 1",
    "task.beam": "1 <= x",
    "task.lenpen": "0 <= x",
    "task.max_len_a": "0 <= x",
    "task.max_len_b": "0 <= x",
    "task.gen_batch_size": "1 <= x",
    # models
    "model.dropout": "0 <= x < 1",
    "model.attention_dropout": "0 <= x < 1",
    "model.activation_dropout": "0 <= x < 1",
    "model.dropatt": "0 <= x < 1",
    "model.norm_over": ("layer", "channel"),
    "model.pooling": ("mean", "max", "cls"),
    "model.positions": ("sinusoidal", "learned"),
    "model.activation": tuple(ACTIVATIONS),
    "model.init": INITS,
    "model.hidden": "1 <= x",
    "model.layers": "1 <= x",
    "model.d_model": "1 <= x",
    "model.heads": "1 <= x",
    "model.d_ff": "1 <= x",
    "model.max_positions": "1 <= x",
    "model.channels1": "1 <= x",
    "model.channels2": "1 <= x",
    "model.n_layer": "1 <= x",
    "model.n_head": "1 <= x",
    "model.d_head": "1 <= x",
    "model.d_inner": "1 <= x",
    "model.mem_len": "0 <= x",
    "model.weight_init_std": "0 <= x",
}

_RANGE = re.compile(r"^(?:(-?[\d.e]+) (<=?) )?x(?: (<=?) (-?[\d.e]+))?$")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _in_range(value: Any, rule: str) -> bool:
    lo, lo_op, hi_op, hi = _RANGE.match(rule).groups()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    ok_lo = lo is None or (value >= float(lo) if lo_op == "<=" else value > float(lo))
    ok_hi = hi is None or (value <= float(hi) if hi_op == "<=" else value < float(hi))
    return ok_lo and ok_hi


def _lookup(config: dict, dotted: str) -> tuple[bool, Any]:
    for part in dotted.split("."):
        if not isinstance(config, dict) or part not in config:
            return False, None
        config = config[part]
    return True, config


def _valid_text(rule: Any) -> str:
    return "one of " + ", ".join(rule) if isinstance(rule, tuple) else f"a value x with {rule}"


def check_value(key: str, value: Any, rule: Any) -> None:
    """Raises ``ConfigError`` naming ``key``, ``value`` and the valid values when ``value`` breaks ``rule``."""
    if value is None:  # an optional setting left at "the default"
        return
    if isinstance(value, list):  # a list of numbers: each in range
        for item in value:
            check_value(key, item, rule)
        return
    if key == "trainer.device":
        ok = isinstance(value, str) and bool(_DEVICE.match(value))
    elif isinstance(rule, tuple):
        ok = value in rule
    else:
        ok = _in_range(value, rule)
    if not ok:
        raise ConfigError(f"{key}={value!r} is not valid: choose {_valid_text(rule)}")


def check_device(name: str) -> None:
    """A CUDA device asked for where torch sees none is refused now, not after the data is loaded."""
    if name.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"trainer.device={name!r} is not valid here: torch sees no CUDA device "
                              "(choose trainer.device=cpu or auto)")


def check_impl_on_device(impl: str, device_name: str) -> None:
    """An implementation that cannot run on the run's device is refused now, not at the first forward (which
    comes after the data is loaded and the record is written).  The input's dtype is still checked there."""
    if impl not in ("triton", "fused_cpu"):
        return
    device = resolve_device(device_name)
    device_name, device_type = str(device), device.type
    if impl == "triton" and not triton_takes_device(device_type):
        raise ConfigError(f"norm.impl='triton' cannot run on trainer.device={device_name!r}: the Triton kernels need "
                          "a CUDA device (choose norm.impl=auto or torch)")
    if impl == "fused_cpu" and device_type != "cpu":
        raise ConfigError(f"norm.impl='fused_cpu' cannot run on trainer.device={device_name!r}: the C++ kernel takes "
                          "CPU tensors (choose norm.impl=auto or torch)")


def check_norm(norm: dict) -> None:
    """The norm variant and its options, by the norms' own validation (``normexp.norms.spec.resolve``)."""
    from types import SimpleNamespace

    try:
        norm_factory(SimpleNamespace(**norm))
    except ValueError as e:
        raise ConfigError(str(e)) from e


def check_config(config: dict) -> None:
    """Checks the resolved job config (a plain dict) against ``RULES``, the norm's options and the device."""
    for key, rule in RULES.items():
        present, value = _lookup(config, key)
        if present:
            check_value(key, value, rule)
    check_norm(config.get("norm") or {})
    device = str(_lookup(config, "trainer.device")[1] or "auto")
    check_device(device)
    check_impl_on_device(str((config.get("norm") or {}).get("impl") or "auto"), device)
