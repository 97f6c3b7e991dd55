"""sectorstorage manager service."""
