"""sectorstorage index service."""
