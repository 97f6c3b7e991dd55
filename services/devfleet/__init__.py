"""Services as local processes, for `make demo`, the tests and the benchmarks: the one place that
starts a service's console script and reads back the address it bound. It imports only
services.common (architecture.toml), so the CLI, the tests and bench can all build on it without
the CLI package holding process-launching code."""

from services.devfleet.fleet import LocalFleet
from services.devfleet.process import BIN_DIR, ServiceProcess, console_script

__all__ = ["BIN_DIR", "LocalFleet", "ServiceProcess", "console_script"]
