"""The training engine: optimizers, losses, metrics, pure train/eval steps, data parallelism, checkpoints."""
