"""sectorctl's command groups: each module has `register(groups, common)` adding its verbs, and
each verb's function takes (args, connection) and returns the exit code."""
