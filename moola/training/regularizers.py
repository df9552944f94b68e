"""Fine-tuning regularisers: L2-SP toward the pretrained weights, and the focal loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class L2SP:
    """alpha * ||theta - theta_0||^2 over anchored (pretrained) parameters + beta * ||theta||^2 over new ones.

    Li et al., "Explicit inductive bias for transfer learning" (2018). The anchor is a detached
    copy of the loaded weights, so the penalty is exactly zero there and its gradient,
    2 * alpha * (theta - theta_0), points away from the anchor: a descent step moves back toward it.
    """

    anchored: list  # [(parameter, anchor tensor)]
    fresh: list  # [parameter]
    alpha: float
    beta: float

    @classmethod
    def from_modules(cls, pretrained: nn.Module, new_modules: list, alpha: float, beta: float) -> L2SP:
        """Anchor every parameter of `pretrained` at its current value; penalise the weight
        matrices (ndim >= 2) of `new_modules` toward zero (biases and norm scales are left free)."""
        anchored = [(p, p.detach().clone()) for p in pretrained.parameters()]
        fresh = [p for module in new_modules for p in module.parameters() if p.ndim >= 2]
        return cls(anchored, fresh, alpha, beta)

    def penalty(self) -> torch.Tensor:
        reference = self.anchored[0][0] if self.anchored else self.fresh[0]
        total = torch.zeros((), device=reference.device)
        if self.alpha:
            total = total + self.alpha * sum(((p - a.to(p.device)) ** 2).sum() for p, a in self.anchored)
        if self.beta:
            total = total + self.beta * sum((p**2).sum() for p in self.fresh)
        return total

    def parameters(self) -> set:
        """Ids of the parameters this penalty covers (they get no AdamW weight decay)."""
        return {id(p) for p, _ in self.anchored} | {id(p) for p in self.fresh}


class FocalLoss(nn.Module):
    """Class-weighted focal loss: mean over rows of w_y * (1 - p_y)^gamma * (-log p_y).

    gamma = 0 is class-weighted cross-entropy (averaged over rows, not over weights).
    """

    def __init__(self, gamma: float, weight: torch.Tensor | None = None):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight if weight is not None else torch.ones(0))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(logits, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)  # (n,)
        loss = -((1 - log_p.exp()) ** self.gamma) * log_p
        if self.weight.numel():
            loss = loss * self.weight[target]
        return loss.mean()
