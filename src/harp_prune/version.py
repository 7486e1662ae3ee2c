"""The version of harp-prune: written here once (pyproject.toml reads it)."""

__version__ = "0.1.0"
