"""The BiLSTM encoder shared by the masked autoencoder and EnhancedSimpleLSTM."""

from __future__ import annotations

import torch
from torch import nn


class BiLSTMEncoder(nn.Module):
    """(n, T, C) -> (n, T, 2 * hidden_size) per-step features."""

    def __init__(self, n_channels: int, hidden_size: int = 128, num_layers: int = 2, dropout: float = 0.0):
        super().__init__()
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.lstm = nn.LSTM(n_channels, hidden_size, num_layers=num_layers, batch_first=True,
                            bidirectional=True, dropout=dropout if num_layers > 1 else 0.0)

    @property
    def output_size(self) -> int:
        return 2 * self.hidden_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, _ = self.lstm(x)  # (n, T, 2H)
        return features
