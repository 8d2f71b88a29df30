"""The package version, in a module of its own so that any layer may read it without importing
the public API in ``m3leo_cli/__init__.py`` (which points at every layer)."""

__version__ = "0.1.0"
