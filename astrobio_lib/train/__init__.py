"""Training: the loop, optimizers, checkpoints, distributed setup."""
