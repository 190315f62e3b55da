#!/usr/bin/env bash
# Regenerates docs/results/: the papers' tables on the CPU-feasible columns (RT, SST5, MNIST, PTB) at profile full.
#
#   scripts/reproduce_results.sh            # run (or resume) the sweep, then build the tables
#   scripts/reproduce_results.sh plan       # print what each stage would launch, run nothing
#   scripts/reproduce_results.sh tables     # only copy the records and build the tables (stage 4)
#
# Resumable: each stage is a normexp-reproduce call, which launches only the runs without a finished (completed or
# diverged) record under $OUT; unfinished runs resume from their checkpoints. Interrupted? Run the same command again.
# Stages (seeds: 5 for the rows of Tables 1-3, 3 for the rest):
#   1. Tables 1-3 and the partial-detach table, seeds 1-3: w/o Norm, LayerNorm, LayerNorm-simple, DetachNorm,
#      DetachMean, DetachVariance, and AdaNorm at every C of its grid {0.5, 1, 2} (conf/table/adanorm_table3.yaml).
#   2. Tables 1-3, seeds 4-5; AdaNorm only at the C chosen on valid in each column (grid=chosen, from stage 1's seeds).
#   3. Ba et al.'s batch-size table (B = 128 and 4; not 1) and the RMSNorm re-centring table, seeds 1-3.
#   4. The run.json records (only those: no checkpoints, no logs) are copied to $DOCS/runs/ and every table is built
#      from that copy into $DOCS/tables/, so that
#        normexp-table table=adanorm_table3 root=docs/results profile=full
#      rebuilds the committed table from the committed records.
# Both cores: the joblib launcher with $JOBS jobs, each on one torch thread.
#
# Cost per run, measured (one torch thread per run, two runs at a time on the 2-core development VM, 2026-12-04):
# RT 37 s, SST5 29 s, PTB 31 s (means over 37 full runs each), MNIST CNN 5.4 min (3,440 steps; 10 min while the
# test suite ran beside it). Perm-MNIST at B = 4: 13.3-15.4 min for its 137,500 steps (152-176 steps/s; 12 runs);
# B = 128 85 s (4,300 steps; 12 runs). Runs: 148 in stages 1-2 (37 per column: 4 rows x 5 seeds,
# AdaNorm 3 C x 3 seeds + 2, DetachMean/Variance 2 x 3) and 24 + 24 in stage 3. Measured in all (the records' wall
# times): 196 runs, 497 core-minutes: stages 1-2 277 (MNIST 217 of them), stage 3 220 (B = 4 167 of them), i.e.
# about 4.2 h with 2 jobs.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-outputs/results}
DOCS=${DOCS:-docs/results}
JOBS=${JOBS:-2}
PYTHON=${PYTHON:-python}
COLUMNS=rt,sst5,mnist,ptb
MODE=${1:-all}
case "$MODE" in all|plan|tables) ;; *) echo "usage: $0 [plan|tables]" >&2; exit 2 ;; esac
DRY=false
[[ "$MODE" == plan ]] && DRY=true

reproduce() {  # normexp-reproduce with the sweep's common settings; trainer.threads/progress change no result
  "$PYTHON" -m normexp.cli.reproduce profile=full launcher=joblib out_root="$OUT" plots=false dry_run="$DRY" \
    "$@" hydra.launcher.n_jobs="$JOBS" trainer.threads=1 trainer.progress=false
}

sweep() {
for table in adanorm_table1 adanorm_table2 adanorm_table3 adanorm_detach; do
  reproduce table="$table" tasks="$COLUMNS" seeds=1,2,3
done
for table in adanorm_table1 adanorm_table2 adanorm_table3; do
  reproduce table="$table" tasks="$COLUMNS" seeds=4,5 grid=chosen
done
# B = 1 is left out: 550,000 steps per run (over an hour each at the rate measured for B = 4); its cells read "–".
reproduce table=ln_paper_batch_size tasks=B=128,B=4 seeds=1,2,3
reproduce table=rmsnorm_paper_recentring seeds=1,2,3
}
[[ "$MODE" != tables ]] && sweep
$DRY && exit 0

# The records the tables are built from, and nothing else: finished runs only (a sweep still running elsewhere
# leaves records of runs in flight, which must not be committed).
"$PYTHON" - "$OUT" "$DOCS/runs" <<'EOF2'
import json, shutil, sys
from pathlib import Path

from normexp.engine.job import FINAL

out, runs = Path(sys.argv[1]), Path(sys.argv[2])
for record in out.rglob("run.json"):
    relative = record.relative_to(out)
    if relative.parts[0] != "tables" and json.loads(record.read_text()).get("status") in FINAL:
        (runs / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(record, runs / relative)
EOF2
# TABLES="adanorm_table1 ..." builds only those tables (e.g. while the runs of the others have not started).
for table in ${TABLES:-adanorm_table1 adanorm_table2 adanorm_table3 adanorm_detach ln_paper_batch_size rmsnorm_paper_recentring}; do
  "$PYTHON" -m normexp.cli.table table="$table" root="$DOCS" profile=full out_dir="$DOCS/tables" > /dev/null
done
echo "tables: $DOCS/tables; records: $DOCS/runs"
