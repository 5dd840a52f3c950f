"""`scripts/gpu-validate`: one pass over the traps that fake a GPU boundary cost, on one real GPU, in ≤ 10 min.

Each check compares a benchbed figure with an independent reference (CUDA-graph or triton timing, an
nvbandwidth-style verified copy, the datasheet arithmetic) or records a fact a reader needs (persistence,
placement, throttling). Nothing here changes clocks, persistence or MIG: those are read before and after, and the
document says whether they stayed the same. Without a GPU (or with --dry) every GPU check is reported as skipped
with its reason, so the script and its document are tested on CPU.
"""
