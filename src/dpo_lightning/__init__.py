"""dpo_lightning: Direct Preference Optimization on PyTorch Lightning, composed with Hydra."""

from .module import DPOModule

__version__ = "0.1.0"
__all__ = ["DPOModule", "__version__"]
