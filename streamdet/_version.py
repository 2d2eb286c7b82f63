"""The package version, read by pyproject.toml and ``streamdet --version``."""

__version__ = "0.1.0"
