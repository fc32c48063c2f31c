"""`switchyard train` and `switchyard eval`: the CLIs of the learned models."""
