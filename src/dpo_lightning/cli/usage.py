"""`--help` of a command: what it does, five examples, and the config groups it composes with their options (read
from its root config's defaults list), instead of Hydra's generic page and a dump of the whole config."""

from __future__ import annotations

import textwrap
from pathlib import Path

import yaml


def groups_of(conf: Path, config_name: str) -> dict[str, tuple[str, str | None]]:
    """The groups a root config composes, by the key they fill (`eval_judge` for `judge@eval_judge`): each its
    group's folder and its default option; nested root configs (online.yaml's `train`) included."""
    found: dict[str, tuple[str, str | None]] = {}
    defaults = (yaml.safe_load((conf / f"{config_name}.yaml").read_text()) or {}).get("defaults") or []
    for entry in defaults:
        if isinstance(entry, str):
            if entry != "_self_" and (conf / f"{entry}.yaml").is_file():
                found = {**groups_of(conf, entry), **found}
            continue
        for key, value in entry.items():
            key = str(key).removeprefix("override ").strip().lstrip("/")
            group = key.split("@")[0]
            if (conf / group).is_dir() and not group.startswith("hydra"):
                found[key.split("@")[-1] if "@" in key else group] = (group, value)
    return found


def own_keys(conf: Path, config_name: str) -> set[str]:
    """The top-level keys of a root config and of the root configs it composes (`output_dir` of eval.yaml), with
    its groups: a command-line key among them is the command's own, whatever TRL calls it."""
    root = yaml.safe_load((conf / f"{config_name}.yaml").read_text()) or {}
    keys = set(root) | set(groups_of(conf, config_name))
    for entry in root.get("defaults") or []:
        if isinstance(entry, str) and entry != "_self_" and (conf / f"{entry}.yaml").is_file():
            keys |= own_keys(conf, entry)
    return keys


def usage(conf: Path, config_name: str, examples: str) -> str:
    lines = [examples.strip("\n"), "", "Config groups (group=option; the default in brackets):"]
    for name, (group, default) in groups_of(conf, config_name).items():
        options = sorted(p.stem for p in (conf / group).glob("*.yaml"))
        shown = ", ".join(f"[{o}]" if o == default else o for o in options)
        named = name if name == group else f"{group}@{name}"
        text = f"{named:<17} {shown}" + ("" if default else "  (none by default)")
        lines += textwrap.wrap(text, 116, initial_indent="  ", subsequent_indent=" " * 20)
    lines += [
        "",
        "Any key: key=value (loss.beta=0.1, optimizer.lr=1e-6, data.path=pairs.jsonl). The composed config:",
        "--cfg job --resolve. Hydra's own options: --hydra-help. Guides: README.md and docs/.",
    ]
    return "\n".join(lines)
