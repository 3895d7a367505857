#!/bin/bash
# probe.sh NAME INIT_DIR [extra args]  -- from-scratch probe from a custom init checkpoint
name=$1 init=$2; shift 2
cd "$(dirname "$0")/../.."  # repository root
export OMP_NUM_THREADS=1 TQDM_DISABLE=1 PYTHONPATH=${SNAP:-.}
exec nice -n 5 .venv/bin/python -m albert pretrain --data ${DATA:-runs/data-en-128} --tokenizer runs/tok-en-8k \
    --model $init --output runs/$name --max-steps ${STEPS:-3000} --batch-size 32 --optimizer adamw --learning-rate ${LR:-1e-3} \
    --warmup-steps 100 --eval-fraction 0.01 --eval-every 100 --eval-batches 20 --save-every 100 --keep 2 --log-every 20 "$@" > runs/$name.log 2>&1
