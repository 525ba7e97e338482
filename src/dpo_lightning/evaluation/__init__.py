"""An evaluation's pieces: scoring pairs, diversity and collapse figures, the judged verdicts, the result object and
its renderings (report, model card), two evaluations head to head, and the blind reading. `evaluate(cfg)` itself is
a task (`dpo_lightning.tasks.evaluate`)."""

import importlib
import warnings
from typing import Any

_MOVED = {"evaluate": "dpo_lightning.tasks.evaluate", "load_trained_policy": "dpo_lightning.tasks.evaluate"}


def __getattr__(name: str) -> Any:
    """`dpo_lightning.evaluation.evaluate` (before 0.2): now `dpo_lightning.tasks.evaluate.evaluate`."""
    if name in _MOVED:
        warnings.warn(
            f"dpo_lightning.evaluation.{name} moved to {_MOVED[name]}.{name}; the old path goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
