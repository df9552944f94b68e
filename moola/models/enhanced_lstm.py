"""EnhancedSimpleLSTM: BiLSTM encoder, 2-head self-attention with a residual LayerNorm, MLP head.

With `span_channel`, the input's last channel marks the labeled span (1 on its bars, `moola.data.inputs`):
the encoder reads the other channels (the ones it was pretrained on), and the head reads the
mean of the attended steps over the whole window beside their mean over the span's bars.
"""

from __future__ import annotations

import torch
from torch import nn

from moola.models.encoder import BiLSTMEncoder


class EnhancedSimpleLSTM(nn.Module):
    def __init__(self, n_channels: int, n_classes: int = 2, hidden_size: int = 128, num_layers: int = 2,
                 n_heads: int = 2, dropout: float = 0.1, span_channel: bool = False):
        super().__init__()
        self.init_args = {"n_channels": n_channels, "n_classes": n_classes, "hidden_size": hidden_size,
                          "num_layers": num_layers, "n_heads": n_heads, "dropout": dropout}  # rebuilds it
        if span_channel:  # recorded only when on: files written before it rebuild as they were
            self.init_args["span_channel"] = True
        self.span_channel = span_channel
        self.encoder = BiLSTMEncoder(n_channels, hidden_size, num_layers)  # same layout as the autoencoder's
        width = self.encoder.output_size  # 2 * 128 = 256
        self.attention = nn.MultiheadAttention(width, n_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(width)
        # BatchNorm standardises the pooled features across the batch (the linear probe's
        # StandardScaler): mean-pooled LayerNorm outputs differ little between windows, and an
        # unnormalised head barely moves in the smoke run's 30 optimizer steps.
        pooled = 2 * width if span_channel else width  # the span's mean beside the window's
        self.classifier = nn.Sequential(
            nn.BatchNorm1d(pooled), nn.Linear(pooled, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, n_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (n, T, C) -> logits (n, n_classes); with `span_channel`, C counts the span channel too."""
        mask = None
        if self.span_channel:
            x, mask = x[..., :-1], x[..., -1:]  # (n, T, C - 1) prices, (n, T, 1) span marks
        steps = self.encoder(x)  # (n, T, 256)
        attended, _ = self.attention(steps, steps, steps, need_weights=False)  # (n, T, 256)
        steps = self.norm(steps + attended)
        pooled = steps.mean(dim=1)  # (n, 256)
        if mask is not None:  # a time-warped span has fractional marks: a weighted mean
            span = (steps * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-6)  # (n, 256)
            pooled = torch.cat([pooled, span], dim=1)  # (n, 512)
        return self.classifier(pooled)  # (n, n_classes)
