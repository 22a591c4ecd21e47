#!/usr/bin/env bash
# Joins the shards written by docs/slurm/gauntlet-array.sh into one report and applies the
# release gate (docs/SCALE-OUT.md). Submit it to run after every array task succeeded:
#
#   jid=$(sbatch --parsable docs/slurm/gauntlet-array.sh)
#   sbatch --dependency=afterok:"$jid" docs/slurm/gauntlet-merge.sh
#
# The merge reads the model and data at the paths the shards recorded (it runs the integrity
# checks on the whole run). Its exit status is the gate's: 0 passed, 1 a rule failed, 2 bad
# input, 3 an integrity check failed (with --strict).
#SBATCH --job-name=gauntlet-merge
#SBATCH --cpus-per-task=4
#SBATCH --mem=8G
#SBATCH --time=01:00:00
#SBATCH --output=gauntlet-merge-%j.out
set -euo pipefail

GAUNTLET=${GAUNTLET:-gauntlet}
RESULTS=${RESULTS:-$HOME/gauntlet-results/run-1}
GATE=${GATE:-$HOME/gauntlet-gate.toml}

exec "$GAUNTLET" merge "$RESULTS"/shard-* --report-dir "$RESULTS/merged" --gate "$GATE" \
  --threads "${SLURM_CPUS_PER_TASK:-4}" --quiet
