"""Typed interface of the rust_core extension (sectorstorage hot path)."""

__version__: str
