"""The `data=` config options as data modules. A single-source option (`builtin`, `hh`, `shp`, `jsonl`,
`preference`) keeps its source's keys at the top of `data`, so `data.path=...` and `data.format.x=...` work on the
command line as always; `preference_data` turns them into one `PairSource` and hands the rest to the module.
`data=mixture` holds whole data options under `data.sources.<name>`; `mixture_data` takes each one's source, named,
with its weight or count, and applies its own (the mixture's) loader settings to the pooled pairs."""

from __future__ import annotations

from typing import Any

from .datamodule import PreferenceDataModule
from .formats import PairFormat
from .sources import PairSource


def preference_data(
    format: PairFormat | None = None,
    path: str | None = None,
    tokenizer: Any = None,
    split: str = "train",
    subset: str | None = None,
    data_dir: str | None = None,
    val_path: str | None = None,
    val_split: str | None = None,
    on_bad_row: str = "error",
    chat_template: bool | str = False,  # or "auto" (PairSource.decide_chat_template)
    val_fraction: float = 0.05,
    split_seed: int = 0,
    **settings: Any,
) -> PreferenceDataModule:
    """One source (the option's top-level source keys) and the module's settings (lengths, batches, packing, ...)."""
    source = PairSource(
        format, path, split, subset, data_dir, val_path, val_split, on_bad_row, chat_template, val_fraction, split_seed
    )
    return PreferenceDataModule([source], tokenizer=tokenizer, **settings)


preference_data.keywords_for = PreferenceDataModule  # its **settings: checked against the module's own types

SOURCE_KEYS = (
    "format",
    "path",
    "split",
    "subset",
    "data_dir",
    "val_path",
    "val_split",
    "on_bad_row",
    "chat_template",
    "val_fraction",
    "split_seed",
)


def mixture_data(
    sources: dict[str, PreferenceDataModule],
    tokenizer: Any = None,
    weights: dict[str, float] | None = None,
    pairs: dict[str, int] | None = None,
    **settings: Any,
) -> PreferenceDataModule:
    """Several sources, each a whole data option (built first, as Hydra does nested targets: only its source is
    kept), named as in `data.sources`; `weights` (of `size`) or `pairs` by name."""
    settings = {k: v for k, v in settings.items() if k not in SOURCE_KEYS}  # the mixture's own source keys are unset
    given = dict(weights or pairs or {})
    unknown = sorted(set(given) - set(sources or {}))
    if unknown:
        raise ValueError(
            f"data.{'weights' if weights else 'pairs'}: names must match data.sources "
            f"{sorted(sources or {})} (unknown: {unknown})"
        )
    picked = []
    for name, option in (sources or {}).items():
        source = option.sources[0]
        source.name = name
        source.weight = (weights or {}).get(name)
        source.pairs = (pairs or {}).get(name)
        picked.append(source)
    return PreferenceDataModule(picked, tokenizer=tokenizer, **settings)


mixture_data.keywords_for = PreferenceDataModule
