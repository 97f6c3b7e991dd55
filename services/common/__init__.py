"""sectorstorage common service."""
