"""The version of harp-prune: written here once (pyproject.toml reads it)."""

__version__ = "0.1.0"
"""The installed harp-prune's version (``harp --version`` prints it; every results file records it)."""
