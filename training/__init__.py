"""Training study: data, models, optimizers, schedules and losses for large-batch training."""
