"""The training client: self-distillation with step-aligned critic feedback, and its baselines."""
