"""sectorstorage worker service."""
