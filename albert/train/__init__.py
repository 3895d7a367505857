"""Training: one loop, given an objective, and the run utilities it stands on.

loop.py          the loop: data order, optimiser steps, exact resume, evaluation, checkpoints
objective.py     what an objective gives the loop (its losses, statistics, held-out evaluation)
pretraining.py   the masked-LM + sentence-order objective (`albert pretrain`)
distillation.py  the MiniLMv2 relation-distillation objective (`albert distill`)
data.py          pretraining data, the held-out split and the deterministic sampler
rng.py, distributed.py, precision.py, checkpoints.py, metrics.py, signals.py: seeding and RNG
capture, `torchrun` process groups, precision, atomic checkpoint directories, metrics.jsonl and
the progress bar, SIGINT/SIGTERM handling.
"""
