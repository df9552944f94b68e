"""Models: `nn.Module`s only (no data loading, no training loops), plus the MiniRocket pipeline."""
