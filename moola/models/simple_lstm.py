"""SimpleLSTM: the unidirectional, hidden-32 baseline trained from scratch (gate 6)."""

from __future__ import annotations

import torch
from torch import nn


class SimpleLSTM(nn.Module):
    def __init__(self, n_channels: int, n_classes: int = 2, hidden_size: int = 32):
        super().__init__()
        self.init_args = {"n_channels": n_channels, "n_classes": n_classes, "hidden_size": hidden_size}
        self.lstm = nn.LSTM(n_channels, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (n, T, C) -> logits (n, n_classes) from the last hidden state."""
        _, (hidden, _) = self.lstm(x)  # hidden (1, n, H)
        return self.head(hidden[-1])
