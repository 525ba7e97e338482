"""The config layer: composing a config of conf/ from code, the resolvers that fit a run to its machine and its
model's scale, the memory plan, and the fail-fast check of a composed config."""

from . import recipes
from .compose import compose_config, config_dir
from .validation import ConfigError, validate_config, validate_model_source

recipes.register()  # ${machine:...} and ${recipe:...}, read by conf/ (trainer, optimizer, scheduler, model, module)

__all__ = ["ConfigError", "compose_config", "config_dir", "validate_config", "validate_model_source"]
