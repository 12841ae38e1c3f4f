#!/usr/bin/env bash
# Train a Mega model from a recipe (a Hydra config under configs/) with fairseq-hydra-train.
#
#   scripts/train.sh RECIPE DATA_BIN SAVE_DIR [OVERRIDE ...]
#
# RECIPE    a config under configs/ without .yaml, e.g. lm/wikitext103, lm/enwik8, lm/demo, mt/wmt16_en_de,
#           lra/listops
# DATA_BIN  binarised data (fairseq-preprocess output, with dict.txt or dict.LANG.txt; for lra/ recipes
#           scripts/prepare_lra.sh output or a release folder)
# SAVE_DIR  checkpoints go to SAVE_DIR/checkpoints, TensorBoard logs to SAVE_DIR/tensorboard,
#           the Hydra log and the composed config to SAVE_DIR (hydra_train.log, .hydra/)
# OVERRIDE  Hydra overrides, e.g. optimization.max_update=1000 model.dropout=0.2
#           'optimization.update_freq=[3]'; keys under task, model, criterion, optimizer and
#           lr_scheduler are passed as ++key=value, so fields the recipe does not list work too.
#           The model and task keys of a recipe (model._name and task._name in its config), with
#           the values its arch gives them and their help texts:
#             python -m mega_fairseq.options --arch mega_lra_listops --task mega_sequence_classification
#
# For example:
#   scripts/train.sh lra/listops data/lra/listops runs/lra_listops model.dropout=0.2
#
# Launch mode, from the environment:
#   (nothing)            one process: fairseq-hydra-train (fairseq spawns one worker per visible GPU)
#   NPROC=8              torchrun --nproc_per_node 8 (one process per GPU)
#   NNODES=3 NODE_RANK=0 MASTER_ADDR=host0 [MASTER_PORT=29500]   with NPROC: torchrun on several
#                        nodes; run the same command on every node with its NODE_RANK
#   SLURM_JOB_ID set     srun inside a Slurm allocation (submit this script with sbatch), NNODES and
#                        NPROC default to the allocation's nodes and tasks per node; SLURM=0 disables
#   CPU=1                common.cpu=true; with NPROC>1 the processes talk over gloo
#   DRY_RUN=1            check the arguments, print the command and exit
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

need_args 3 "RECIPE DATA_BIN SAVE_DIR" "$@"

CONFIGS="$ROOT/configs"
RECIPE="${1%.yaml}"
DATA_BIN="$2"
SAVE_DIR="$3"
shift 3
[[ -n "$DATA_BIN" && -n "$SAVE_DIR" ]] || die "DATA_BIN and SAVE_DIR must not be empty"

recipes() { (cd "$CONFIGS" && find . -name '*.yaml' | sed 's|^\./||; s|\.yaml$||' | sort | paste -sd ' ' -); }
if [[ "$RECIPE" != */* || ! -f "$CONFIGS/$RECIPE.yaml" ]]; then
    die "unknown recipe '$RECIPE'; available: $(recipes)"
fi
[[ -d "$DATA_BIN" ]] || die "DATA_BIN '$DATA_BIN' is not a directory (make it with scripts/prepare_*.sh)"
if [[ "$RECIPE" == lm/* || "$RECIPE" == mt/* ]]; then
    compgen -G "$DATA_BIN/dict*.txt" > /dev/null ||
        die "DATA_BIN '$DATA_BIN' has no dict.txt (or dict.LANG.txt): is it fairseq-preprocess output?"
fi
mkdir -p "$SAVE_DIR"
# absolute paths: the config saved with each checkpoint must not depend on where we ran from
DATA_BIN="$(cd "$DATA_BIN" && pwd)"
SAVE_DIR="$(cd "$SAVE_DIR" && pwd)"

overrides=("task.data=$DATA_BIN" "common.user_dir=$ROOT/mega_fairseq"
           "hydra.run.dir=$SAVE_DIR" "hydra.job.chdir=false")
user_overrides=()
for arg in "$@"; do
    case "$arg" in
        -*) die "overrides are Hydra key=value pairs (e.g. optimization.lr=[1e-3]), not fairseq-train flags: '$arg'" ;;
        *=*) ;;
        *) die "override '$arg' is not key=value" ;;
    esac
    case "$arg" in
        task.*|model.*|criterion.*|optimizer.*|lr_scheduler.*) arg="++$arg" ;;
    esac
    user_overrides+=("$arg")
done
overridden() { [[ " ${user_overrides[*]-} " == *" $1="* || " ${user_overrides[*]-} " == *" ++$1="* ]]; }
overridden checkpoint.save_dir || overrides+=("checkpoint.save_dir=$SAVE_DIR/checkpoints")
overridden common.tensorboard_logdir || overrides+=("common.tensorboard_logdir=$SAVE_DIR/tensorboard")

NPROC="${NPROC:-}"
NNODES="${NNODES:-1}"
MASTER_PORT="${MASTER_PORT:-29500}"
if [[ "${CPU:-0}" == 1 ]]; then
    overrides+=("common.cpu=true")
fi

launcher=()
entry=(python -u -m fairseq_cli.hydra_train)
if [[ -n "${SLURM_JOB_ID:-}" && "${SLURM:-1}" != 0 ]]; then
    NNODES="${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-$NNODES}}"
    NPROC="${NPROC:-${SLURM_NTASKS_PER_NODE:-1}}"
    NPROC="${NPROC%%(*}"  # "8(x3)" -> 8
    launcher=(srun --label --nodes="$NNODES" --ntasks-per-node="$NPROC")
    # fairseq reads ranks from the Slurm environment and meets on the first node at this port
    overrides+=("distributed_training.distributed_world_size=$((NNODES * NPROC))"
                "distributed_training.distributed_port=$MASTER_PORT")
elif [[ -n "$NPROC" || "$NNODES" != 1 ]]; then
    NPROC="${NPROC:-1}"
    launcher=(torchrun --nproc_per_node="$NPROC")
    entry=(-m fairseq_cli.hydra_train)
    if [[ "$NNODES" != 1 ]]; then
        [[ -n "${NODE_RANK:-}" && -n "${MASTER_ADDR:-}" ]] || die "NNODES=$NNODES needs NODE_RANK and MASTER_ADDR"
        launcher+=(--nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR"
                   --master_port="$MASTER_PORT")
    else
        launcher+=(--master_port="$MASTER_PORT")
    fi
    overrides+=("distributed_training.distributed_world_size=$((NNODES * NPROC))")
    if [[ "${CPU:-0}" == 1 && $((NNODES * NPROC)) -gt 1 ]]; then
        # fairseq infers torchrun ranks from the GPU count; on CPU read them from torchrun's environment
        # (Hydra interpolations, resolved in each process: keep the single quotes)
        # shellcheck disable=SC2016
        overrides+=("distributed_training.distributed_backend=gloo"
                    "distributed_training.ddp_backend=legacy_ddp"
                    "distributed_training.distributed_no_spawn=true"
                    "distributed_training.distributed_init_method=env://"
                    'distributed_training.distributed_rank=${oc.env:RANK}'
                    'distributed_training.device_id=${oc.env:LOCAL_RANK}')
    fi
else
    entry=(fairseq-hydra-train)
fi

# Hydra's short error report ends with a line of its own after the error; its full report ends with the error
export HYDRA_FULL_ERROR="${HYDRA_FULL_ERROR:-1}"
group="${RECIPE%/*}"
name="${RECIPE##*/}"
cmd=("${launcher[@]}" "${entry[@]}" --config-dir "$CONFIGS/$group" --config-name "$name"
     "${overrides[@]}" "${user_overrides[@]}")
print_command "${cmd[@]}"
[[ "${DRY_RUN:-0}" == 1 ]] && exit 0
exec "${cmd[@]}"
