"""Models: `nn.Module`s only (no data loading, no training loops), plus the MiniRocket pipeline.

Every network records its constructor arguments (`init_args`); `architecture(model)` is what a
checkpoint stores and `rebuild(architecture)` makes the same network again from it alone.
"""

from __future__ import annotations

from torch import nn


def _classes() -> dict:
    from moola.models.enhanced_lstm import EnhancedSimpleLSTM
    from moola.models.masked_autoencoder import MaskedAutoencoder
    from moola.models.simple_lstm import SimpleLSTM

    return {cls.__name__: cls for cls in (EnhancedSimpleLSTM, MaskedAutoencoder, SimpleLSTM)}


def architecture(model: nn.Module) -> dict:
    """`{"class": name, "args": constructor arguments}` of a moola network."""
    return {"class": type(model).__name__, "args": dict(model.init_args)}


def rebuild(spec: dict) -> nn.Module:
    """The network `architecture` described, freshly initialised (load its state dict next)."""
    classes = _classes()
    if not isinstance(spec, dict) or spec.get("class") not in classes:
        raise ValueError(f"architecture: expected one of {sorted(classes)}, found {spec!r}; "
                         "the checkpoint predates architecture metadata: retrain it")
    return classes[spec["class"]](**spec["args"])
