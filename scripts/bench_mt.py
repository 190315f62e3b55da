"""Training throughput of our trainer vs ``fairseq-train`` on the same model, data and batches (words/s, target tokens).

    python scripts/bench_mt.py                   # CPU, 40 updates each, 2 alternating repeats
    python scripts/bench_mt.py --updates 200 --device cuda --layers 6 --dim 512 --ffn 1024 --max-tokens 4096

Both run in a subprocess on the same binarized folder (ours, in fairseq-preprocess layout): IWSLT14 De-En sentences
(by default the smoke profile's split: the first 6783 pairs of the published valid set), fairseq's
``transformer_iwslt_de_en`` with the sizes given, pre-norm, shared embeddings, LayerNorm, Adam (0.9, 0.98) with
decoupled weight decay 1e-4, inverse-sqrt warmup, label smoothing 0.1, the same ``--max-tokens`` and seed.

What each number times: fairseq's ``wps`` is its own meter (target tokens over the wall time of its training loop,
data loading included); ours is the run record's ``units_per_s`` (target tokens over the time spent in update steps),
printed also with the time our loader takes to collate the same batches added back, so that the ratio is not flattered.
Each repeat runs, back to back: fairseq-train as shipped, fairseq-train with our trainer's allocator setting (freed
memory kept in the process, normexp/engine/cpu_memory.py), and ours.  Printed: the best of the repeats for each (the machine
may be shared) and the median of the per-repeat ratios (drift of a shared machine hits a repeat's three runs alike).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPLITS = ("valid[:6783]", "valid[6783:]", "test[:1]")


def fairseq_cmd(data: Path, a) -> list[str]:
    return [sys.executable, "-m", "fairseq_cli.train", str(data), "--task", "translation", "--source-lang", "de",
            "--target-lang", "en", "--dataset-impl", "mmap", "--arch", "transformer_iwslt_de_en",
            "--encoder-layers", str(a.layers), "--decoder-layers", str(a.layers), "--encoder-embed-dim", str(a.dim),
            "--decoder-embed-dim", str(a.dim), "--encoder-ffn-embed-dim", str(a.ffn),
            "--decoder-ffn-embed-dim", str(a.ffn), "--share-all-embeddings", "--encoder-normalize-before",
            "--decoder-normalize-before", "--dropout", "0.1", "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)",
            "--weight-decay", "1e-4", "--lr", "1e-3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "100",
            "--warmup-init-lr", "1e-7", "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
            "--max-tokens", str(a.max_tokens), "--max-update", str(a.updates), "--seed", "1", "--no-save",
            "--disable-validation", "--log-format", "json", "--log-interval", "10", "--no-progress-bar",
            "--num-workers", "0"] + (["--cpu"] if a.device == "cpu" else [])


def ours_cmd(out: Path, a) -> list[str]:
    return [sys.executable, "-m", "normexp.cli.train", "experiment=tiny/iwslt14_deen", f"out_root={out}",
            f"hydra.run.dir={out}/run",
            "trainer.progress=false", "norm=layernorm", f"task.train='{SPLITS[0]}'", f"task.valid='{SPLITS[1]}'",
            f"task.test='{SPLITS[2]}'", f"task.max_tokens={a.max_tokens}", f"model.encoder_layers={a.layers}",
            f"model.decoder_layers={a.layers}", f"model.encoder_embed_dim={a.dim}", f"model.decoder_embed_dim={a.dim}",
            f"model.encoder_ffn_embed_dim={a.ffn}", f"model.decoder_ffn_embed_dim={a.ffn}", "optim.lr=1e-3",
            f"trainer.max_steps={a.updates}", "trainer.max_epochs=1000", f"trainer.device={a.device}",
            f"trainer.threads={a.threads}",
            "trainer.log_every_steps=0"]


def run(cmd: list[str], env: dict) -> str:
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} … failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr


def fairseq_wps(log: str) -> tuple[float, float]:
    """(wps, loss) of fairseq's end-of-training "train" summary (all updates)."""
    for line in reversed(log.splitlines()):
        start = line.find("{")
        if start >= 0 and '"train_wps"' in line:
            stats = json.loads(line[start:])
            return float(stats["train_wps"]), float(stats["train_loss"])
    raise SystemExit(f"no train summary in fairseq-train's log:\n{log[-2000:]}")


def collate_seconds(folder_task, updates: int) -> float:
    batches = folder_task.train_batches(0)
    started = time.perf_counter()
    for i, _ in enumerate(batches):
        if i + 1 >= updates:
            break
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--updates", type=int, default=40)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--ffn", type=int, default=256)
    p.add_argument("--max-tokens", type=int, default=2048)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads for both (0: torch's default)")
    a = p.parse_args()
    os.environ.setdefault("NORMEXP_DATA_ROOT", str(REPO.parent / "shared" / "data"))
    from normexp.engine.cpu_memory import KEEP_UP_TO
    from normexp.models.fairseq_transformer import FairseqTransformerConfig
    from normexp.tasks.translation.task import TranslationConfig, TranslationTask

    task = TranslationTask(TranslationConfig(train=SPLITS[0], valid=SPLITS[1], test=SPLITS[2], max_tokens=a.max_tokens),
                           FairseqTransformerConfig(), seed=1)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if a.threads > 0:  # fairseq-train has no thread flag: torch reads OMP_NUM_THREADS at start-up
        env["OMP_NUM_THREADS"] = str(a.threads)
    # Our trainer keeps freed memory in the process on CPU (normexp/engine/cpu_memory.py); fairseq-train does not.  The
    # second fairseq run gets the same allocator setting through glibc's environment variables: like for like.
    kept = {**env, "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(KEEP_UP_TO)}
    collate = collate_seconds(task, a.updates)
    results = {"fairseq": [], "fairseq, memory kept": [], "ours": []}
    with tempfile.TemporaryDirectory(prefix="bench_mt.") as tmp:
        for r in range(a.repeats):  # interleaved, so that slow drift of the machine hits all three alike
            results["fairseq"].append(fairseq_wps(run(fairseq_cmd(task.folder, a), env)))
            results["fairseq, memory kept"].append(fairseq_wps(run(fairseq_cmd(task.folder, a), kept)))
            out = Path(tmp) / f"ours{r}"
            run(ours_cmd(out, a), env)
            record = json.loads(next(out.rglob("run.json")).read_text())
            assert record["status"] == "completed" and record["steps"] == a.updates, record["status"]
            loss = record["curves"]["train_loss"][-1]["loss"] / 0.6931471805599453  # nats → bits, as fairseq logs
            results["ours"].append((record["units_per_s"], loss, record["units_per_s"] * record["train_time_s"]))
    print(f"data: {task.folder} ({a.updates} updates, max_tokens {a.max_tokens}, {a.layers}+{a.layers} layers, "
          f"d {a.dim}, FFN {a.ffn}, device {a.device}, {a.repeats} repeats)")
    for name, runs in results.items():
        best = max(runs)
        print(f"{name:21s}: best {best[0]:8.1f} words/s   train loss {best[1]:.3f} bits   (all: "
              + ", ".join(f"{w:.0f}" for w, *_ in runs) + ")")
    ours_wps, _, tokens = max(results["ours"])
    ours_wall = tokens / (tokens / ours_wps + collate)
    print(f"ours incl. {collate:.2f} s of batch collation: {ours_wall:.1f} words/s")
    for name in ("fairseq", "fairseq, memory kept"):
        paired = statistics.median(o[0] / f[0] for o, f in zip(results["ours"], results[name]))
        best_ratio = ours_wps / max(results[name])[0]
        print(f"ratio ours / {name}: best {best_ratio:.3f} (incl. collation {ours_wall / max(results[name])[0]:.3f}), "
              f"median of the {a.repeats} paired repeats {paired:.3f}")


if __name__ == "__main__":
    main()
