"""One prepared check of a CUDA machine (under 8 minutes on one GPU), writing JSON:

1. ``norms``: every norm variant on the device, float32 and bfloat16, each implementation that can run there
   (``impl`` = triton, torch and auto on CUDA; auto on CPU), forward and backward against the reference formula
   computed in float64 (max abs error, pass/fail, the implementation that ran);
2. ``norm_timings``: forward+backward ms of every variant against ``F.layer_norm``, ``F.rms_norm`` and
   ``torch.compile`` of our reference LayerNorm formula;
3. ``steps``: ms per update (50 updates after 3 warm-up) of the IWSLT, WMT big and Transformer-XL models of the
   AdaNorm presets (``experiment=adanorm/...``) at each ``trainer.precision``, on the small data of the tiny presets;
4. ``ddp``: one update of 2 processes (NCCL on 2+ GPUs, else gloo on CPU) with the batchnorm variant, both ranks
   ending with the same weights;
5. ``norm_kernels`` (CUDA only): scripts/bench_norms_cuda.py's table (every row-wise variant x impl against
   F.layer_norm, F.rms_norm, at H = 512 ... 25088, float32 and bfloat16; error of our kernels in float32);
6. ``triton_breakdown`` (CUDA only): scripts/bench_triton_breakdown.py (host vs device time of the Triton norms, the
   backward at 1-16 programs per SM; about a minute, estimated);
7. ``compiled_step`` (CUDA only): the IWSLT preset's update at bf16 with ``trainer.compile=true``.

The JSON is rewritten after each section, so a run stopped early keeps what it measured.

    python scripts/gpu_check.py --out gpu_check.json                 # on the GPU machine (data: NORMEXP_DATA_ROOT)
    python scripts/gpu_check.py --sections steps,triton_breakdown    # only these (short device time: the unmeasured)
    python scripts/gpu_check.py --device cpu --out /tmp/check.json   # small sizes, the tiny models, 1 timed update: CI

It exits 1 if a correctness check fails. See docs/gpu.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import socket
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))  # the benchmarks it runs as sections
NORMS = ["none", "layernorm", "layernorm_simple", "rmsnorm", "prmsnorm", "detachnorm", "detach_mean", "detach_var",
         "adanorm", "batchnorm"]
PRESETS = {"iwslt14_deen": "IWSLT14 De-En", "wmt14_ende": "WMT14 En-De big", "enwik8": "Transformer-XL enwik8"}
DATA_KEYS = ("train", "valid", "test", "bpe_codes", "bpe_merges", "data_file")  # from the tiny presets: small data
DDP_TIMEOUT_S = 120
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 6e-2}
SECTIONS = ("norms", "norm_timings", "steps", "ddp", "norm_kernels", "triton_breakdown", "compiled_step")
CUDA_ONLY = ("norm_kernels", "triton_breakdown", "compiled_step")  # the first two have CPU tests of their own


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median ms of ``fn()`` over ``repeats`` calls after 3 warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            fn()
            times.append(1000 * (time.perf_counter() - t))
    return sorted(times)[len(times) // 2]


def check_norms(device: torch.device, rows: int, dim: int) -> list[dict]:
    from normexp.norms import resolve

    out = []
    impls = ("auto", "triton", "torch") if device.type == "cuda" else ("auto",)
    for name, dtype, impl in itertools.product(NORMS, (torch.float32, torch.bfloat16), impls):
        if impl == "triton" and not resolve(name).rowwise:
            continue  # torch modules under any impl
        try:
            out.append(_check_norm(name, dtype, impl, device, rows, dim))
        except Exception as e:  # a check reports every case; one that raises is a failed case, named
            out.append({"norm": name, "dtype": str(dtype).removeprefix("torch."), "impl": impl, "ok": False,
                        "error": f"{type(e).__name__}: {e}"[:500]})
            print(f"norm {name} {dtype} impl={impl}: {out[-1]['error']}", flush=True)
    return out


def _check_norm(name: str, dtype: torch.dtype, impl: str, device: torch.device, rows: int, dim: int) -> dict:
    from normexp.norms import build_norm
    from normexp.norms.reference import normalize

    torch.manual_seed(0)
    norm = build_norm(name, dim, impl=impl).to(device)
    x = (torch.randn(rows, dim, device=device) * 2 + 1).to(dtype).requires_grad_()
    g = torch.randn(rows, dim, device=device).to(dtype)
    y = norm(x)
    (dx,) = torch.autograd.grad(y, x, g)
    x64 = x.detach().double().requires_grad_()
    if name == "batchnorm":
        y64 = F.batch_norm(x64, None, None, norm.weight.double(), norm.bias.double(), True, 0.0, norm.eps)
    elif name == "none":
        y64 = x64 * 1
    else:
        w = norm.weight.double() if norm.weight is not None else None
        b = norm.bias.double() if norm.bias is not None else None
        y64 = normalize(x64, norm.spec, w, b)
    (dx64,) = torch.autograd.grad(y64, x64, g.double())
    err = max((y.double() - y64).abs().max().item(), (dx.double() - dx64).abs().max().item() / max(
        dx64.abs().max().item(), 1.0))
    return {"norm": name, "dtype": str(dtype).removeprefix("torch."), "impl": impl,
            "ran": getattr(norm, "impl_ran", "torch"), "max_error": err,
            "ok": err <= TOLERANCE[dtype] * (8 if dtype == torch.bfloat16 else 1)}


def norm_timings(device: torch.device, rows: int, dim: int, repeats: int) -> list[dict]:
    from normexp.norms import build_norm
    from normexp.norms.reference import normalize
    from normexp.norms.spec import resolve

    out = []
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(rows, dim, device=device, dtype=dtype, requires_grad=True)
        g = torch.randn(rows, dim, device=device, dtype=dtype)
        w = torch.ones(dim, device=device, dtype=dtype, requires_grad=True)
        b = torch.zeros(dim, device=device, dtype=dtype, requires_grad=True)
        spec = resolve("layernorm")
        compiled = torch.compile(lambda x, w, b: normalize(x, spec, w, b))
        candidates = {f"variant:{name}": build_norm(name, dim).to(device=device, dtype=dtype) for name in NORMS}
        candidates |= {"F.layer_norm": lambda x: F.layer_norm(x, (dim,), w, b),
                       "F.rms_norm": lambda x: F.rms_norm(x, (dim,), w),
                       "torch.compile(reference layernorm)": lambda x: compiled(x, w, b)}
        for label, fn in candidates.items():
            def step(fn=fn):
                torch.autograd.grad(fn(x), [x], g)
            out.append({"what": label, "dtype": str(dtype).removeprefix("torch."), "shape": [rows, dim],
                        "fwd_bwd_ms": round(timed(step, device, repeats), 4)})
    return out


def compose(preset: str, device: torch.device, small: bool):
    """``experiment=adanorm/<preset>`` on the small data of ``experiment=tiny/<preset>`` (and, if ``small``, its
    small model and batches too)."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from omegaconf import OmegaConf

    from normexp.cli.config import register_configs
    from normexp.cli.train import forget_fairseq_configs

    forget_fairseq_configs()  # fairseq's own "model"/"task" configs, registered by a previous preset, break composing
    tiny = yaml.safe_load((REPO / "conf" / "experiment" / "tiny" / f"{preset}.yaml").read_text())
    overrides = [f"task.{k}={json.dumps(v)}" for k, v in tiny.get("task", {}).items() if small or k in DATA_KEYS]
    if small:
        overrides += [f"model.{k}={json.dumps(v)}" for k, v in tiny.get("model", {}).items()]
    register_configs()
    with initialize_config_dir(str(REPO / "conf"), version_base=None):
        cfg = hydra_compose("config", overrides=[f"experiment=adanorm/{preset}", f"trainer.device={device}",
                                                 "trainer.progress=false", "name=gpu_check", *overrides])
    return OmegaConf.to_object(cfg)


def step_timings(device: torch.device, steps: int, small: bool, tmp: Path, presets=tuple(PRESETS),
                 precisions=None, compile: bool = False) -> list[dict]:
    from normexp.engine.job import build
    from normexp.engine.loggers import ConsoleLogger
    from normexp.engine.trainer import Trainer
    from normexp.records import RunRecord

    out = []
    precisions = precisions or ["fp32", "bf16", "fp16"] + (["tf32"] if device.type == "cuda" else [])
    for preset in presets:
        label = PRESETS[preset]
        objects = compose(preset, device, small)
        torch.manual_seed(1)
        record = RunRecord(task=preset, model="m", norm="layernorm", seed=1, name="gpu_check", profile="check",
                           config={})
        task, model, _ = build(objects, device, record)
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        batches = itertools.chain.from_iterable(task.train_batches(e) for e in itertools.count())  # small data: cycle
        warmup = 1 if small else 3
        groups = [[next(batches)] for _ in range(steps + warmup)]
        for precision in precisions:
            model.load_state_dict(initial)
            cfg = dataclasses.replace(objects.trainer, precision=precision, update_freq=1, compile=compile)
            trainer = Trainer(task, model, objects.optim, cfg, tmp / preset / precision, record, ConsoleLogger())
            for group in groups[:warmup]:
                trainer.train_step(group)
            trainer.sync()
            if device.type == "cuda":
                torch.cuda.synchronize()
            started, units = time.perf_counter(), trainer.progress.units
            for group in groups[warmup:]:
                trainer.train_step(group)
            trainer.sync()
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            out.append({"preset": f"adanorm/{preset}", "model": label, "precision": precision, "compiled": compile,
                        "updates": steps,
                        "ms_per_update": round(1000 * seconds / steps, 2),
                        "units_per_s": round((trainer.progress.units - units) / seconds, 1),
                        "loss": float(trainer.meter.running),
                        "parameters": sum(p.numel() for p in model.parameters())})
            print(json.dumps(out[-1]), flush=True)
    return out


def _ddp_rank(rank: int, port: int, use_cuda: bool, out: str) -> None:
    import faulthandler

    faulthandler.dump_traceback_later(DDP_TIMEOUT_S, exit=True)  # a hung rank prints where it hangs, then exits
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    from normexp.engine import distributed
    from normexp.norms import build_norm

    device = distributed.setup("cuda" if use_cuda else "cpu")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), build_norm("batchnorm", 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 1)).to(device)
    ddp = distributed.wrap(model, device)
    opt = torch.optim.Adam(model.parameters())
    x = torch.randn(256, 64, generator=torch.Generator().manual_seed(rank)).to(device)

    def step():
        opt.zero_grad()
        ddp(x).square().mean().backward()
        opt.step()

    ms = timed(step, device, 10)
    torch.save({"ms": ms, "state": {k: v.cpu() for k, v in model.state_dict().items()}}, Path(out) / f"{rank}.pt")
    torch.distributed.barrier()  # neither rank tears the group down while the other still uses it
    torch.distributed.destroy_process_group()


def ddp_step(device: torch.device, tmp: Path) -> dict:
    use_cuda = device.type == "cuda" and torch.cuda.device_count() >= 2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_rank, args=(port, use_cuda, str(tmp)), nprocs=2)
    ranks = [torch.load(tmp / f"{r}.pt", weights_only=True) for r in (0, 1)]
    same = all(torch.equal(ranks[0]["state"][k], ranks[1]["state"][k]) for k in ranks[0]["state"])
    return {"backend": "nccl" if use_cuda else "gloo (CPU)", "ms_per_update": [r["ms"] for r in ranks],
            "ranks_agree": same, "ok": same}


def norm_kernels(device: torch.device) -> list[dict]:
    from bench_norms_cuda import bench_cuda

    return bench_cuda(device=str(device), with_compile=False)


def triton_breakdown(device: torch.device) -> list[dict]:
    from bench_triton_breakdown import main as breakdown

    return breakdown(["--device", str(device)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default="gpu_check.json")
    ap.add_argument("--steps", type=int, default=None, help="timed updates per preset and precision (50 on CUDA)")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help="comma-separated; they run in the order " + ",".join(SECTIONS))
    a = ap.parse_args()
    chosen = a.sections.split(",")
    if not set(chosen) <= set(SECTIONS):
        unknown = ", ".join(sorted(set(chosen) - set(SECTIONS)))
        ap.error(f"--sections: unknown {unknown}; choose from {', '.join(SECTIONS)}")
    device = torch.device(a.device)
    if device.type != "cuda":
        chosen = [c for c in chosen if c not in CUDA_ONLY]
    small = device.type != "cuda"
    steps = a.steps or (50 if not small else 1)
    rows, dim = (16384, 1024) if not small else (64, 128)
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"gpu_check-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "small": small}

    def save(section: str, value) -> None:  # after each section: a run stopped early keeps what it measured
        if callable(value):  # a section that raises is recorded as such; the next ones still run
            try:
                value = value()
            except Exception as e:
                import traceback

                traceback.print_exc()
                value = {"ok": False, "error": f"{type(e).__name__}: {e}"[:2000]}
        result[section] = value
        result["seconds"] = round(time.perf_counter() - started, 1)
        Path(a.out).write_text(json.dumps(result, indent=1))

    sections = {
        "norms": lambda: check_norms(device, rows // 16, dim),
        "norm_timings": lambda: norm_timings(device, rows, dim, 20 if not small else 3),
        "steps": lambda: step_timings(device, steps, small, tmp),
        "ddp": lambda: ddp_step(device, tmp),
        "norm_kernels": lambda: norm_kernels(device),
        "triton_breakdown": lambda: triton_breakdown(device),
        "compiled_step": lambda: step_timings(device, steps, small, tmp, presets=["iwslt14_deen"], precisions=["bf16"],
                                              compile=True)}
    for name in (s for s in SECTIONS if s in chosen):
        save(name, sections[name])
        if name == "norms" and isinstance(result["norms"], list):
            print(f"norms: {sum(r['ok'] for r in result['norms'])}/{len(result['norms'])} ok", flush=True)
    failed = [k for k, v in result.items() if isinstance(v, dict) and v.get("ok") is False]
    failed += [f"norms: {r['norm']} {r['dtype']} impl={r['impl']}" for r in result["norms"] if not r["ok"]] \
        if isinstance(result.get("norms"), list) else []
    failed += [f"norm_kernels: {r['name']} {r['impl']} {r['dtype']} {r['rows']}x{r['H']} err {r['err']:.1e}"
               for r in result.get("norm_kernels", []) if isinstance(r, dict) and (r.get("err") or 0) > 1e-3]
    save("failed", failed)
    save("ok", not failed)
    print(f"wrote {a.out}: ok={result['ok']} in {result['seconds']} s")
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
