"""sectorstorage cli service."""
