"""The import paths of modules that moved into the layered packages (0.2), kept for one release.

`import dpo_lightning.training` (or a config's `_target_: dpo_lightning.checkpointing.AtomicCheckpointIO`, or
`python -m dpo_lightning.online ...`) still works: it warns once (DeprecationWarning) and gives the module at its
new path, the same module object, so classes and functions are the same ones whichever path imported them.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

ROOT = "dpo_lightning"
# old path -> new path, below the root; a package's submodules follow it (losses.dpo -> core.losses.dpo)
MOVED = {
    "batches": "core.batches",
    "logprobs": "core.logprobs",
    "lm_head": "core.lm_head",
    "losses": "core.losses",
    "reference": "core.reference",
    "refcache": "core.refcache",
    "hub": "core.hub",
    "redaction": "core.redaction",
    "tables": "core.tables",
    "evaluation.generation": "core.generation",
    "evaluation.intervals": "core.statistics",
    "metrics": "lightning.metrics",
    "policy_module": "lightning.policy_module",
    "module": "lightning.module",
    "reward": "lightning.reward",
    "strategies": "lightning.strategies",
    "checkpointing": "lightning.checkpointing",
    "optim": "lightning.optim",
    "loggers": "lightning.loggers",
    "callbacks": "lightning.callbacks",
    "model_card": "evaluation.model_card",
    "evaluation.llm_judge": "judges.llm",
    "evaluation.judging": "tasks.judges",
    "evaluation.auto_judge": "tasks.judge_training",
    "evaluation.runner": "tasks.evaluate",
    "training": "tasks.train",
    "online": "tasks.online.loop",
    "online_configs": "tasks.online.configs",
    "online_pairs": "tasks.online.pairs",
    "online_samplers": "tasks.online.samplers",
    "online_table": "tasks.online.table",
}


def new_path(fullname: str) -> str | None:
    """Where the module `fullname` lives now (None: it did not move)."""
    if not fullname.startswith(ROOT + "."):
        return None
    name = fullname[len(ROOT) + 1 :]
    for old, new in MOVED.items():
        if name == old or name.startswith(old + "."):
            return f"{ROOT}.{new}{name[len(old) :]}"
    return None


class _Alias(importlib.abc.Loader):
    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def create_module(self, spec) -> ModuleType:
        warnings.warn(
            f"{self.old} moved to {self.new}; the old path goes in the next release", DeprecationWarning, stacklevel=2
        )
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        sys.modules[self.old] = module  # the module at its new path, already executed

    def get_code(self, fullname: str):  # `python -m <old path>` runs the module at its new path
        return importlib.util.find_spec(self.new).loader.get_code(self.new)


class MovedModules(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path=None, target=None):
        new = new_path(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(fullname, new))


def install() -> None:
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedModules())  # before the path finders: an old path is always the alias
