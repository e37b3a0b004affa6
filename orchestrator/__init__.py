"""Ray Tune sweeps, results, TensorBoard and the `proxyless` CLI (imports nas_core and cluster)."""
