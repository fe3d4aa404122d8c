"""Configuration: the schema, loading with precedence and sources, and the default file."""

from eemt_cleanup.config.loader import LoadedConfig, Roots, load_config
from eemt_cleanup.config.schema import Settings

__all__ = ["LoadedConfig", "Roots", "Settings", "load_config"]
