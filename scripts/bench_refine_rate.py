"""How often the fused CPU forward sums a row twice, on the activations of real training runs.

    python scripts/bench_refine_rate.py experiment=tiny/iwslt14_deen norm=layernorm [more overrides]

The forward of the centred variants (LayerNorm family) takes a row's statistics in one pass, about the previous
row's mean (normexp/norms/csrc/row_kernels.h, forward_row).  A row whose mean lies more than sqrt(3) of its std from
that shift (rho = (mean - shift)^2 / var > 3) is summed a second time, about its own mean: one more pass from L1.
This script trains with the given Hydra overrides (the normexp-train CLI, same config) and, on every 5th call of each
centred norm module in training mode, applies the kernel's rule to the call's rows in float64, with the rows split
into threads as ATen's parallel_for splits them (each thread's first row is taken about 0).  It prints the share of
rows that pay the second sum, per norm site and in all.  The worst case (every row) costs the forward 1.1-1.6x.
"""
from __future__ import annotations

import sys
from collections import defaultdict

import torch

from normexp.norms.variants import RowNorm

SAMPLE_EVERY = 5
ROW_ELEMENTS_PER_TASK = 32768  # row_grain in normexp/norms/csrc/row_vec.h


def refined_rows(x: torch.Tensor, threads: int) -> torch.Tensor:
    """Which rows of x (rows, H) the kernel sums twice on `threads` threads: (mean - shift)^2 > 3 var (biased)."""
    rows, width = x.shape
    x = x.double()
    mean, var = x.mean(1), x.var(1, unbiased=False)
    # at::parallel_for: min(threads, ceil(rows / grain)) contiguous chunks of ceil(rows / chunks) rows.
    grain = max(1, ROW_ELEMENTS_PER_TASK // width)
    chunks = min(threads, -(-rows // grain))
    shift = torch.cat([mean.new_zeros(1), mean[:-1]])
    shift[::-(-rows // chunks)] = 0
    return (mean - shift) ** 2 > 3 * var


def main() -> None:
    seen = defaultdict(lambda: [0, 0])  # site -> [rows, refined]
    names, calls = {}, defaultdict(int)

    def count(module, args):
        if not isinstance(module, RowNorm) or not module.spec.center or not module.training:
            return
        calls[module] += 1
        if calls[module] % SAMPLE_EVERY:
            return
        site = names.setdefault(module, f"site {len(names)} ({module.spec.name}, H={module.dim})")
        refined = refined_rows(args[0].detach().reshape(-1, module.dim), torch.get_num_threads())
        seen[site][0] += refined.numel()
        seen[site][1] += int(refined.sum())

    torch.nn.modules.module.register_module_forward_pre_hook(count)
    from normexp.cli.train import main as train  # after the hook: it is global, so any model built later is seen

    try:
        train()
    finally:
        rows, refined = (sum(v[i] for v in seen.values()) for i in (0, 1))
        print(f"\nrows summed twice (rho > 3), {torch.get_num_threads()} threads, every {SAMPLE_EVERY}th call:")
        for site, (n, r) in seen.items():
            print(f"  {site}: {r}/{n} = {r / max(n, 1):.3%}")
        print(f"all sites: {refined}/{rows} = {refined / max(rows, 1):.4%}")


if __name__ == "__main__":
    sys.exit(main())
