"""Classical baselines the learned models are compared with."""
