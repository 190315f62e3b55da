"""``normexp-reproduce table=<name> profile=tiny|full [launcher=...] [seeds=1,2,3] [extra overrides]``.

One command per table: the table spec gives rows (norms, their config filters and hyper-parameter grids) × columns
(task, config filters); each column runs the
experiment preset of the profile (``tiny/<task>`` or ``adanorm/<task>`` unless the column names its own), over the
seeds; ``tasks=`` keeps the columns of those tasks, or the columns of those labels or keys (``tasks=B=128,B=4``).
A row's ``where:`` values and every point of its ``grid:`` become overrides (``norm.C=0.5``, ...); with
``grid=chosen`` a grid row runs only the value chosen so far on the validation set in each column (its extra seeds,
after the grid ran). Runs whose record is already completed or diverged are not launched again, so re-running the command resumes
a sweep (unfinished runs resume from their checkpoints) and, once everything is done, launches nothing. Then the
table is rebuilt from the records.

Launchers: ``basic`` (one job after another, default), ``joblib`` (local parallel jobs), ``submitit_local`` and
``slurm`` (``conf/hydra/launcher/slurm.yaml``: edit partition/time/GPUs, or override ``hydra.launcher.*``).
``dry_run=true`` prints the commands (ready to paste) and an estimate of the time they take from the records' measured
wall times, and writes nothing. ``--help`` lists the tables, profiles, launchers and options.
"""
from __future__ import annotations

import shlex
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from normexp.cli import conf_dir
from normexp.records import RunRecord, find_records
from normexp.analysis.report import write_report
from normexp.analysis.selection import choose, config_value, grid_points
from normexp.analysis.tables import ColumnSpec, RowSpec, TableSpec

CONF = Path(conf_dir())
LAUNCHERS = {"basic": None, "joblib": "joblib", "submitit_local": "submitit_local", "slurm": "slurm"}
DEFAULT_PRESETS = {"full": "adanorm", "tiny": "tiny"}
FINISHED = ("completed", "diverged")
_MISSING = object()


@dataclass(frozen=True)
class Job:
    experiment: str
    where: tuple[tuple[str, str], ...]  # the column's config filters, passed on as overrides
    norm: str
    seed: int
    row: tuple[tuple[str, object], ...] = ()  # the row's config filters and grid point, passed on as overrides


def fail(message: str) -> None:
    """Bad input: one line on stderr, exit code 2, nothing launched or written."""
    print(f"Error: {message}", file=sys.stderr)
    raise SystemExit(2)


def table_names() -> list[str]:
    return sorted(p.stem for p in (CONF / "table").glob("*.yaml"))


def load_table(name: str) -> TableSpec:
    import normexp.cli.table  # noqa: F401 - registers the table schema

    if name not in table_names():
        fail(f"table={name} is not a table: choose one of {', '.join(table_names())}")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("tables", overrides=[f"table={name}"])
    return OmegaConf.to_object(cfg.table)


def preset(column: ColumnSpec, profile: str) -> str:
    return column.experiments.get(profile) or f"{DEFAULT_PRESETS[profile]}/{column.task}"


def plan(spec: TableSpec, profile: str, seeds: list[int], tasks: list[str] | None, norms: list[str] | None,
         chosen: dict[tuple[str, str], tuple] | None = None) -> list[Job]:
    """Every run of the table: columns × rows (× grid points) × seeds. ``chosen``: (row id, column key) → the one grid
    point to run there (``grid=chosen``); a grid row's column missing from it runs nothing."""
    columns = [c for c in spec.columns if not tasks or {c.task, c.label, c.key} & set(tasks)]  # a task or one column
    rows = [r for r in spec.rows if not norms or r.norm in norms or r.key in norms]
    return [Job(preset(c, profile), tuple((k, str(v)) for k, v in c.where.items()), r.norm, seed, overrides)
            for c in columns for r in rows for overrides in row_overrides(r, c, chosen) for seed in seeds]


def row_overrides(row: RowSpec, column: ColumnSpec, chosen: dict | None) -> list[tuple]:
    """The override sets that run ``row`` in ``column``: its filters, plus each grid point (or the chosen one)."""
    fixed = tuple(row.where.items())
    if not row.grid:
        return [fixed]
    points = grid_points(row.grid) if chosen is None else [chosen[row.key, column.key]] if (row.key, column.key) in chosen else []
    return [fixed + tuple(zip(row.grid, point)) for point in points]


def chosen_points(spec: TableSpec, out_root: Path, profile: str) -> dict[tuple[str, str], tuple]:
    """(row id, column key) → the grid point chosen on valid so far, from the finished records under ``out_root``."""
    records = [rec for _, rec in find_records(out_root) if rec.profile == profile] if out_root.is_dir() else []
    out = {}
    for row in (r for r in spec.rows if r.grid):
        for column in spec.columns:
            point = choose([rec for rec in records if row.matches(rec) and column.matches(rec)], row.grid)
            if point is not None:
                out[row.key, column.key] = point
    return out


def set_by(overrides: list[str], record: RunRecord) -> bool:
    """Whether the record's config holds every value these command-line overrides set. An override this cannot check
    (a group choice, a deletion, hydra.*) counts as not held: the job is launched, and the trainer itself returns at
    once if its run folder already holds the finished run."""
    parser = OverridesParser.create()
    for text in overrides:
        override = parser.parse_override(text)
        key = override.key_or_group
        if key.startswith("hydra.launcher."):  # where and how many jobs run at once, never what a job computes
            continue
        if key.startswith("hydra") or override.is_delete() or override.package is not None:
            return False
        value = record.config
        for part in key.split("."):
            value = value.get(part, _MISSING) if isinstance(value, dict) else _MISSING
        if isinstance(value, dict) or value != override.value():
            return False
    return True


def finished_jobs(out_root: Path, profile: str, jobs: list[Job], spec: TableSpec, extra: list[str]) -> set[Job]:
    """Jobs with a completed or diverged record under ``out_root``: same profile, norm, seed and column, and the values
    of the extra overrides (a sweep rerun with ``trainer.grad_stats=true`` is another sweep)."""
    columns = {(preset(c, profile), tuple((k, str(v)) for k, v in c.where.items())): c for c in spec.columns}
    records = [rec for _, rec in find_records(out_root)
               if rec.status in FINISHED and rec.profile == profile and set_by(extra, rec)] if out_root.is_dir() else []
    return {job for job in jobs for rec in records
            if rec.norm == job.norm and rec.seed == job.seed and columns[job.experiment, job.where].matches(rec)
            and all(config_value(rec, k) == v for k, v in job.row)}


def multirun_commands(jobs: list[Job], launcher: str, table: str, out_root: Path, extra: list[str]) -> list[list[str]]:
    """One Hydra multirun per set of column filters: experiments × norms × seeds of the jobs still to run.

    The product may hold a few finished combinations; those return at once (the trainer skips finished runs).
    """
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.where, job.row), []).append(job)
    commands = []
    for (where, row), group in groups.items():
        values = lambda attr: ",".join(sorted({str(getattr(j, attr)) for j in group}))  # noqa: E731
        cmd = [sys.executable, "-m", "normexp.cli.train", "-m", f"experiment={values('experiment')}",
               f"norm={values('norm')}", f"seed={values('seed')}", f"out_root={out_root}", f"logger.group={table}",
               *[f"{k}={v}" for k, v in where], *[f"{k}={v}" for k, v in row], *extra]
        if LAUNCHERS[launcher]:
            cmd.append(f"hydra/launcher={LAUNCHERS[launcher]}")
        commands.append(cmd)
    return commands


def usage() -> str:
    return f"""usage: normexp-reproduce table=<name> [profile=tiny|full] [option=value ...] [normexp-train overrides ...]

Runs every row x column x seed of a paper table that has no finished record yet under out_root, then writes the
table to <out_root>/tables/<profile>/. Rerunning it resumes the sweep; when all is done it launches nothing.

  table=      one of: {', '.join(table_names())}
  profile=    tiny (smoke-sized presets, minutes on a CPU; default) | full (the papers' settings)
  launcher=   {' | '.join(LAUNCHERS)} (default basic: one job after another)
  seeds=      comma-separated seeds (default 1,2,3)
  tasks=      only these columns' tasks (comma-separated)
  norms=      only these rows' norms (comma-separated)
  grid=       all (every value of a row's grid; default) | chosen (only the value chosen on valid so far)
  out_root=   where the runs and tables go (default outputs)
  dry_run=    true: print the commands (ready to paste) and a time estimate from measured runs; write nothing
  plots=      true|false: the convergence/gradient figures (default true)
  wandb=      true|false: a summary W&B run of the table (default false)
Any other key=value is passed on to every normexp-train job (e.g. trainer.device=cuda)."""


def parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    known = {"table", "profile", "launcher", "seeds", "out_root", "tasks", "norms", "dry_run", "plots", "wandb", "grid"}
    if any(arg in ("-h", "--help", "help") for arg in argv):
        print(usage())
        raise SystemExit(0)
    options, extra = {}, []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in known:
            options[key] = value
        else:
            extra.append(arg)
    if "table" not in options:
        fail(f"table=<name> is missing: choose one of {', '.join(table_names())} (--help: all options)")
    if options.setdefault("profile", "tiny") not in DEFAULT_PRESETS:
        fail(f"profile={options['profile']} is not valid: choose tiny or full")
    if options.setdefault("launcher", "basic") not in LAUNCHERS:
        fail(f"launcher={options['launcher']} is not valid: choose one of {', '.join(LAUNCHERS)}")
    for flag in ("dry_run", "plots", "wandb"):
        if options.get(flag, "false") not in ("true", "false"):
            fail(f"{flag}={options[flag]} is not valid: choose true or false")
    return options, extra


def estimate(todo: list[Job], spec: TableSpec, profile: str, out_root: Path) -> str:
    """Runs x time, from the median wall time of finished runs of the same column and profile under ``out_root``."""
    columns = {(preset(c, profile), tuple((k, str(v)) for k, v in c.where.items())): c for c in spec.columns}
    records = [rec for _, rec in find_records(out_root)
               if rec.status in FINISHED and rec.profile == profile and rec.wall_time_s > 0] if out_root.is_dir() else []
    total, unknown = 0.0, 0
    for job in todo:
        times = [rec.wall_time_s for rec in records if columns[job.experiment, job.where].matches(rec)]
        if times:
            total += statistics.median(times)
        else:
            unknown += 1
    known = len(todo) - unknown
    text = f"estimate: {len(todo)} runs"
    if known:
        text += f"; {known} of them ~{total / 3600:.2f} h one after another (median measured wall time of their column)"
    if unknown:
        text += f"; {unknown} with no measured run of their column yet (time unknown)"
    return text


def main(argv: list[str] | None = None) -> int:
    options, extra = parse(sys.argv[1:] if argv is None else argv)
    spec = load_table(options["table"])
    profile, out_root = options["profile"], Path(options.get("out_root", "outputs")).resolve()
    split = lambda key: [x for x in options.get(key, "").split(",") if x]  # noqa: E731
    seeds = [int(s) for s in split("seeds")] or [1, 2, 3]
    if options.get("grid", "all") not in ("all", "chosen"):
        fail(f"grid={options['grid']} is not valid: choose all (every grid value) or chosen (the value chosen on "
             "valid so far)")
    chosen = chosen_points(spec, out_root, profile) if options.get("grid") == "chosen" else None
    jobs = plan(spec, profile, seeds, split("tasks"), split("norms"), chosen)
    todo = [j for j in jobs if j not in finished_jobs(out_root, profile, jobs, spec, extra)]
    print(f"{spec.name} ({profile}): {len(jobs)} runs, {len(jobs) - len(todo)} already finished, {len(todo)} to launch")
    dry = options.get("dry_run") == "true"
    failed = 0
    for cmd in multirun_commands(todo, options["launcher"], spec.name, out_root, extra):
        print("$ " + shlex.join(cmd), flush=True)
        if not dry:  # a failed job is recorded as failed; the table shows it
            failed += subprocess.run(cmd, check=False).returncode != 0
    if dry:
        print(estimate(todo, spec, profile, out_root))
        return 0
    paths = write_report(spec, out_root, out_root / "tables", profile, plots=options.get("plots", "true") == "true",
                        wandb=options.get("wandb") == "true")
    print(paths["md"].read_text(encoding="utf-8"))
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
