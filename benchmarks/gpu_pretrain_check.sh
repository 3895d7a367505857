#!/bin/bash
# The CUDA path of `albert pretrain` in every precision it selects: bf16 autocast, fp16 + grad
# scaler, fp32 - albert-base-v2, 64 x 128, 60 steps each; prints tokens/s and losses per precision
# and writes them to benchmarks/results/gpu_pretrain_check.json.
#   DATA=dir-from-albert-data TOK=its-tokenizer bash benchmarks/gpu_pretrain_check.sh
# (e.g. the main job's runs/demo/data and runs/demo/tokenizer). Needs a CUDA GPU.
set -e
: "${DATA:?set DATA to an albert data directory}" "${TOK:?set TOK to its tokenizer directory}"
OUT=${OUT:-$(mktemp -d)}
export PYTHONPATH=$PWD TQDM_DISABLE=1 PYTHONUNBUFFERED=1
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
for prec in bf16 fp16 fp32; do
  rm -rf "/tmp/run-$prec"
  python3 -m albert pretrain --data "$DATA" --tokenizer "$TOK" --model albert-base-v2 \
    --output "/tmp/run-$prec" --max-steps 60 --batch-size 64 --precision $prec --device cuda \
    --log-every 20 --save-every 60 --eval-every 60 --eval-batches 4 --optimizer lamb --learning-rate 1e-3
  cp "/tmp/run-$prec/metrics.jsonl" "$OUT/metrics-$prec.jsonl"
done
python3 - "$OUT" <<'PY'
import json, sys
import torch
sys.path.insert(0, "benchmarks")
from machine import write_results
rows = []
for p in ("bf16", "fp16", "fp32"):
    records = [json.loads(line) for line in open(f"{sys.argv[1]}/metrics-{p}.jsonl")]
    train = [r for r in records if not r.get("eval")]
    held_out = [r["mlm_accuracy"] for r in records if r.get("eval")]
    rows.append({"precision": p, "train": train, "held_out_mlm_accuracy": held_out})
    print(p, "tokens/s", [round(r["tokens_per_second"]) for r in train], "loss", [round(r["loss"], 3) for r in train],
          "held-out MLM accuracy", [round(x, 3) for x in held_out])
payload = {"device": torch.cuda.get_device_name(), "torch_cuda": torch.version.cuda, "model": "albert-base-v2",
           "batch": "64 x 128", "optimizer": "lamb 1e-3", "steps": 60, "rows": rows}
write_results("gpu_pretrain_check", payload)
PY
