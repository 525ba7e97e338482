"""A multirun's jobs as Hydra saved them: each job folder's `.hydra/overrides.yaml` (what the job was given) and
`.hydra/hydra.yaml` (`runtime.choices`: the option picked in every config group, e.g. `loss: dpo`), its resolved
`config.yaml` and its `metrics.json` (absent: the job failed); and which keys the multirun swept."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType

log = logging.getLogger(__name__)


class SweepFileError(ValueError):
    """A file of a multirun that cannot be read; the message names it."""


def read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise SweepFileError(f"{path}: not readable as YAML ({type(e).__name__}: {e})") from e


def lookup(config: dict[str, Any], dotted: str) -> Any:
    """`config`'s value at a dotted key (`loss.beta`), or None."""
    node: Any = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def override_key(o: Override) -> str:
    """The key an override sets as written on a command line, without +/++: `loss.beta`, `loss`, `model@m`."""
    return o.key_or_group if o.package is None else f"{o.key_or_group}@{o.package}"


def parse_overrides(lines: list[str], where: str) -> list[Override]:
    try:
        return OverridesParser.create().parse_overrides([str(line) for line in lines])
    except Exception as e:  # Hydra's OverrideParseException, or anything its grammar raises
        raise SweepFileError(f"{where}: an override Hydra cannot parse ({e})") from e


@dataclass(frozen=True)
class SweepSpec:
    """What the multirun itself was told: its overrides (`loss.beta=0.1,0.5` among them), the sweeper's `params`,
    its optimization direction and the metric train.py returned to it."""

    overrides: list[str] = field(default_factory=list)
    sweeper_params: dict[str, Any] = field(default_factory=dict)
    direction: str | None = None
    optimized_metric: str | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SweepSpec:
        """From the multirun's config as a plain dict: the callback's (resolved) or the saved multirun.yaml."""
        direction = lookup(config, "hydra.sweeper.direction")
        if isinstance(direction, list):  # Optuna's multi-objective form: the first objective
            direction = direction[0] if direction else None
        return cls(
            overrides=list(lookup(config, "hydra.overrides.task") or []),
            sweeper_params=dict(lookup(config, "hydra.sweeper.params") or {}),
            direction=None if direction is None else str(direction).rsplit(".", 1)[-1].lower(),
            optimized_metric=config.get("optimized_metric"),
        )

    @classmethod
    def read(cls, sweep_dir: Path) -> SweepSpec:
        """From `<sweep_dir>/multirun.yaml` (Hydra's basic sweeper writes it; Optuna's does not: then empty)."""
        path = sweep_dir / "multirun.yaml"
        return cls.from_config(read_yaml(path) or {}) if path.is_file() else cls()

    def swept(self) -> list[str]:
        """The keys swept by the multirun's own overrides (`loss.beta=0.1,0.5`, `loss=dpo,ipo`, `x=range(...)`,
        Optuna's `tag(log, interval(...))`) and by the sweeper's params, in the order given."""
        parsed = parse_overrides(self.overrides, "the multirun's overrides (hydra.overrides.task)")
        keys = [override_key(o) for o in parsed if o.is_sweep_override()]
        return list(dict.fromkeys([*keys, *map(str, self.sweeper_params)]))


@dataclass(frozen=True)
class SweepJob:
    """One job of a multirun, as read back from its folder."""

    name: str
    path: Path
    overrides: dict[str, Any]  # key -> value, typed as Hydra parsed the job's override (0.1, "dpo", ...)
    choices: dict[str, Any]  # config group -> the option picked (`loss: dpo`), from hydra.runtime.choices
    config: dict[str, Any]  # the resolved config.yaml train.py wrote ({} when the job stopped before it)
    metrics: dict[str, Any] | None  # metrics.json; None when the job failed (or has not finished yet)

    @property
    def failed(self) -> bool:
        return self.metrics is None

    @property
    def loss(self) -> str | None:
        """The loss by its option name (`dpo`, `ipo`, `rpo_sft`): the group choice Hydra recorded; for a folder
        without `.hydra/`, the class name of the config's `loss._target_`."""
        if "loss" in self.choices:
            return self.choices["loss"]
        target = lookup(self.config, "loss._target_")
        return None if target is None else str(target).rsplit(".", 1)[-1]

    def value(self, key: str) -> Any:
        """The job's value of a swept key: its override, else its group choice, else its config's scalar."""
        if key in self.overrides:
            return self.overrides[key]
        if key in self.choices:
            return self.choices[key]
        found = lookup(self.config, key)
        return None if isinstance(found, (dict, list)) else found

    def metric(self, name: str | None) -> Any:
        return None if self.metrics is None or name is None else self.metrics.get(name)


def job_number(path: Path) -> tuple[int, int | str]:
    return (0, int(path.name)) if path.name.isdigit() else (1, path.name)


def is_multirun_job(folder: Path) -> bool:
    """A job of the multirun: its `.hydra/hydra.yaml` says MULTIRUN (not a single run kept in the sweep's folder,
    as sweeps/*.sh keep the SFT stage in `<dir>/sft/`); a folder without `.hydra/` counts if it holds
    metrics.json."""
    hydra_yaml = folder / ".hydra" / "hydra.yaml"
    if not hydra_yaml.is_file():
        return (folder / "metrics.json").is_file()
    return str(lookup(read_yaml(hydra_yaml) or {}, "hydra.mode") or "").endswith("MULTIRUN")


def read_metrics(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:  # listed as failed, the rest of the sweep still summarised
        log.warning("%s: not readable as JSON (%s); the job is listed as failed", path, e)
        return None


def read_job(folder: Path) -> SweepJob:
    hydra_dir = folder / ".hydra"
    overrides: dict[str, Any] = {}
    if (hydra_dir / "overrides.yaml").is_file():
        where = str(hydra_dir / "overrides.yaml")
        for o in parse_overrides(read_yaml(hydra_dir / "overrides.yaml") or [], where):
            if o.type != OverrideType.DEL and not o.is_sweep_override():
                overrides[override_key(o)] = o.value()
    hydra_cfg = (read_yaml(hydra_dir / "hydra.yaml") or {}) if (hydra_dir / "hydra.yaml").is_file() else {}
    config = (read_yaml(folder / "config.yaml") or {}) if (folder / "config.yaml").is_file() else {}
    return SweepJob(
        name=folder.name,
        path=folder,
        overrides=overrides,
        choices=dict(lookup(hydra_cfg, "hydra.runtime.choices") or {}),
        config=config,
        metrics=read_metrics(folder / "metrics.json"),
    )


def read_jobs(sweep_dir: Path) -> list[SweepJob]:
    """Every job folder directly under `sweep_dir` (Hydra's `hydra.sweep.subdir`, one level), by job number."""
    if not sweep_dir.is_dir():
        raise SweepFileError(f"{sweep_dir}: no such multirun directory")
    folders = sorted((p for p in sweep_dir.iterdir() if p.is_dir() and is_multirun_job(p)), key=job_number)
    return [read_job(p) for p in folders]


def swept_keys(spec: SweepSpec, jobs: list[SweepJob], also: str | None = None) -> list[str]:
    """The keys the multirun swept: its sweep overrides and sweeper params, then any key whose override differs
    between jobs (an Optuna trial's sampled values, with no multirun.yaml); `also` (an explicit --x) first. Hydra's
    own keys (`hydra.*`) are left out."""
    keys = [*([also] if also else []), *spec.swept()]
    for job in jobs:
        for key, value in job.overrides.items():
            if any(other.overrides.get(key) != value for other in jobs):
                keys.append(key)
    return [k for k in dict.fromkeys(keys) if not k.startswith(("hydra.", "hydra/"))]
