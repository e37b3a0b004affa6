"""Ray Train workers (DDP), the architecture actor and cluster launch configs."""
