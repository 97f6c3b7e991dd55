"""The fleet dashboard (`sectorstorage-web`): a read-only web view of the manager and the index,
reached only through their gRPC APIs with a read token (docs/dashboard.md)."""
