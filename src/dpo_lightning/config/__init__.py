"""The config layer: composing a config of conf/ from code, and the fail-fast check of a composed config."""

from .compose import compose_config, config_dir
from .validation import ConfigError, validate_config, validate_model_source

__all__ = ["ConfigError", "compose_config", "config_dir", "validate_config", "validate_model_source"]
