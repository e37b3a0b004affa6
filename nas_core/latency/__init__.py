"""Latency: per-device lookup tables (`table`), their keys (`keys`), profiling (`profiler`),
differentiable expected latency (`predictor`) and predictor validation (`validate`).

Submodules are imported explicitly: spaces need `keys` while `predictor` needs the spaces.
"""
