"""EnhancedSimpleLSTM: BiLSTM encoder, 2-head self-attention with a residual LayerNorm, MLP head."""

from __future__ import annotations

import torch
from torch import nn

from moola.models.encoder import BiLSTMEncoder


class EnhancedSimpleLSTM(nn.Module):
    def __init__(self, n_channels: int, n_classes: int = 2, hidden_size: int = 128, num_layers: int = 2,
                 n_heads: int = 2, dropout: float = 0.1):
        super().__init__()
        self.init_args = {"n_channels": n_channels, "n_classes": n_classes, "hidden_size": hidden_size,
                          "num_layers": num_layers, "n_heads": n_heads, "dropout": dropout}  # rebuilds it
        self.encoder = BiLSTMEncoder(n_channels, hidden_size, num_layers)  # same layout as the autoencoder's
        width = self.encoder.output_size  # 2 * 128 = 256
        self.attention = nn.MultiheadAttention(width, n_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(width)
        # BatchNorm standardises the pooled features across the batch (the linear probe's
        # StandardScaler): mean-pooled LayerNorm outputs differ little between windows, and an
        # unnormalised head barely moves in the smoke run's 30 optimizer steps.
        self.classifier = nn.Sequential(
            nn.BatchNorm1d(width), nn.Linear(width, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, n_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (n, T, C) -> logits (n, n_classes)."""
        steps = self.encoder(x)  # (n, T, 256)
        attended, _ = self.attention(steps, steps, steps, need_weights=False)  # (n, T, 256)
        steps = self.norm(steps + attended)
        return self.classifier(steps.mean(dim=1))  # (n, 256) -> (n, n_classes)
