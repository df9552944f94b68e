"""BiLSTM masked autoencoder: masked steps get a learnable token, the decoder rebuilds them."""

from __future__ import annotations

import torch
from torch import nn

from moola.models.encoder import BiLSTMEncoder


class MaskedAutoencoder(nn.Module):
    def __init__(self, n_channels: int, hidden_size: int = 128, num_layers: int = 2):
        super().__init__()
        self.init_args = {"n_channels": n_channels, "hidden_size": hidden_size, "num_layers": num_layers}
        self.mask_token = nn.Parameter(torch.zeros(n_channels))  # (C,) learned stand-in for a hidden bar
        self.encoder = BiLSTMEncoder(n_channels, hidden_size, num_layers)
        self.decoder = nn.Sequential(
            nn.Linear(self.encoder.output_size, hidden_size), nn.GELU(), nn.Linear(hidden_size, n_channels)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor, return_features: bool = False):
        """x (n, T, C), mask (n, T) bool (True = hidden) -> reconstruction (n, T, C)
        [and the encoder's features (n, T, 2H) when `return_features`]."""
        visible = torch.where(mask.unsqueeze(-1), self.mask_token.to(x.dtype), x)  # (n, T, C)
        features = self.encoder(visible)
        reconstruction = self.decoder(features)
        return (reconstruction, features) if return_features else reconstruction
