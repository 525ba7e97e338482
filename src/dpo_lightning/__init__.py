"""dpo_lightning: Direct Preference Optimization on PyTorch Lightning, composed with Hydra.

Layers, each a package, imports only downward (pyproject.toml's import contracts check it): `core` (batches,
log-probs, losses, the reference, generation, statistics) <- `data`, `models` <- `judges` <- `lightning`,
`evaluation`, `config` <- `tasks` (train, evaluate, online, the auto judge) <- `cli` (the console commands).
"""

from . import _moved
from .lightning.module import DPOModule

_moved.install()  # the import paths of 0.1 (dpo_lightning.training, ...), for one release

__version__ = "0.1.0"
__all__ = ["DPOModule", "__version__"]
