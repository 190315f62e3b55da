"""Training speed from run records, as the RMSNorm paper reports it: seconds per 1k training steps and the speed-up over
LayerNorm, 1 − t_variant / t_LayerNorm (its Tables 2–4; Tables 6 and 8 use 0.1k steps).

The time is the trainer's ``train_time_s``: training steps only, evaluation and checkpointing excluded. A diverged run's
steps were timed like any other, so it counts too. A column whose metric is ``s_per_1k_steps`` reads this instead of a
test metric; any table can be turned into its speed table with ``speed_spec``.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

SPEED_METRIC = "s_per_1k_steps"


def seconds_per_1k_steps(record: Any) -> Optional[float]:
    if record.status in ("completed", "diverged") and record.steps_per_s > 0:
        return 1000.0 / record.steps_per_s
    return None


def speedup(time: Optional[float], baseline_time: Optional[float]) -> Optional[float]:
    """1 − t / t_baseline: 0.25 means a quarter less time per step than the baseline; negative means slower."""
    if time is None or not baseline_time:
        return None
    return 1.0 - time / baseline_time


def speedup_text(cell: Any, baseline: Any) -> str:
    value = speedup(cell.mean, baseline.mean if baseline is not None else None)
    return "" if value is None else f" ({100 * value:+.1f}%)"


def speed_spec(spec: Any) -> Any:
    """The same rows and columns, timed: seconds per 1k steps (lower is better), no paper values, no claims."""
    columns = [replace(c, metric=SPEED_METRIC, higher_is_better=False, digits=1) for c in spec.columns]
    return replace(spec, name=f"{spec.name}_speed", title=f"{spec.title} — training time (s per 1k steps)",
                   caption="Times from the same runs as the table above.", columns=columns, paper={}, claims=[],
                   reference="")


def speed_legend(cells: dict, baseline_label: Optional[str]) -> str:
    hosts = sorted({r.host for cell in cells.values() for r in cell.records})
    devices = sorted({str(r.config.get("trainer", {}).get("device", "?")) for cell in cells.values() for r in cell.records})
    # runs recorded before trainer.precision existed ran in fp32
    precisions = sorted({str(r.config.get("trainer", {}).get("precision", "fp32")) for cell in cells.values()
                         for r in cell.records})
    against = f"(±x%): speed-up over {baseline_label}, 1 − t / t_{baseline_label}, as the RMSNorm paper reports it. " \
        if baseline_label else ""
    return (f"{against}Time: seconds per 1000 training steps (evaluation excluded). Timed on host(s) "
            f"{', '.join(hosts) or '–'}, trainer.device={', '.join(devices) or '–'}, "
            f"trainer.precision={', '.join(precisions) or '–'}; compare times only within one machine and precision.")
