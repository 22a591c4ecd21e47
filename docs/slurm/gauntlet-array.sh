#!/usr/bin/env bash
# One shard of a Gauntlet evaluation per Slurm array task (docs/SCALE-OUT.md).
#
#   jid=$(sbatch --parsable docs/slurm/gauntlet-array.sh)
#   sbatch --dependency=afterok:"$jid" docs/slurm/gauntlet-merge.sh
#
# Slurm sets SLURM_ARRAY_TASK_ID (0..7 for --array=0-7); `--shards 8` turns it into
# `--shard I/8` and `{shard}` in --report-dir becomes I. Every finished batch is checkpointed;
# with --requeue a preempted or failed task starts again with the same command, and `--resume`
# continues from the checkpoint (without one it simply starts). --signal asks Slurm to send
# SIGTERM two minutes before the time limit: Gauntlet then stops after the current batch, keeps
# what is done and exits 130; requeue the task (scontrol requeue) to finish it.
#
# Paths and settings can be overridden from the environment (sbatch --export=ALL,MODEL=...).
#SBATCH --job-name=gauntlet-eval
#SBATCH --array=0-7
#SBATCH --cpus-per-task=4
#SBATCH --mem=8G
#SBATCH --time=04:00:00
#SBATCH --requeue
#SBATCH --signal=B:TERM@120
#SBATCH --output=gauntlet-eval-%A_%a.out
set -euo pipefail

GAUNTLET=${GAUNTLET:-gauntlet}
MODEL=${MODEL:-$HOME/models/resnet18-cifar10.onnx}
DATA=${DATA:-$HOME/data/cifar-10-batches-bin}
RESULTS=${RESULTS:-$HOME/gauntlet-results/run-1}
SHARDS=${SHARDS:-8}
# The evaluation itself: the same for every shard (the merge refuses shards of different runs).
read -r -a EVAL <<< "${EVAL:---preset standard --norm linf --eps 8/255 --batch-size 128}"

mkdir -p "$RESULTS"
# exec: the batch script's SIGTERM (--signal=B:...) reaches Gauntlet itself.
exec "$GAUNTLET" run --model "$MODEL" --dataset "$DATA" "${EVAL[@]}" \
  --threads "${SLURM_CPUS_PER_TASK:-4}" --shards "$SHARDS" --resume \
  --report-dir "$RESULTS/shard-{shard}" --quiet
