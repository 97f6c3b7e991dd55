"""The import rules of architecture.toml hold (services meet only through the protos; shared
code knows no service), and the checker does see a violation (a control)."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.support.paths import REPO

sys.path.insert(0, str(REPO / "scripts"))
import check_imports  # noqa: E402


def test_the_tree_follows_the_rules() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check_imports.py")], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_checker_sees_every_import_form() -> None:
    source = "import services.worker.tasks\nfrom services.index import store\nfrom . import sibling\nfrom ..common import log\n"
    names = [n for _, n in check_imports.imported(ast.parse(source), "services.manager.sub.mod")]
    assert "services.worker.tasks" in names and "services.index.store" in names
    assert "services.manager.sub.sibling" in names and "services.manager.common.log" in names
    project = ["services.common", "services.manager", "services.worker", "services.index"]
    assert check_imports.owner("services.worker.tasks", project) == "services.worker"
    assert check_imports.owner("servicesx", project) is None


def test_bench_may_use_public_entry_points_but_not_private_sql() -> None:
    """The control for `may_not_import`: the imports bench/index.py had before issue 18 (the
    store's SQL text, the schema) are violations; the store's public class is not."""
    rules = tomllib.loads((REPO / "architecture.toml").read_text())
    project, rule = rules["project"]["packages"], rules["packages"]["bench"]

    def violations(source: str) -> list[str]:
        return check_imports.violations_in(ast.parse(source), "bench.index", "bench", rule, project, "bench/index.py")

    assert (
        violations("from services.index.store import IndexStore\nfrom services.devfleet import ServiceProcess\n") == []
    )
    sql = violations("from services.index.store import DECLARE_PATH_SQL, find_holders_sql, upsert_sql\n")
    assert len(sql) == 3 and all("forbids" in v for v in sql), sql
    assert violations("from services.index.schema import COMPONENT, MIGRATIONS\n")
    assert violations("from services.index import locks\n")  # a module bench was not given


def test_the_grpc_free_check_sees_a_stub_import_and_a_stale_glob(tmp_path: Path) -> None:
    domain = tmp_path / "domain.py"
    domain.write_text(
        "import asyncio\nfrom services.common.proto.sectorstorage.v1 import common_pb2\nimport grpc.aio\n"
    )
    edge = tmp_path / "edge.py"
    edge.write_text("import grpc\n")
    table = {
        "forbid": ["grpc", "grpc.*", "services.common.proto.*"],
        "modules": ["pkg.domain", "pkg.gone.*"],
    }
    violations, covered = check_imports.grpc_free_violations(table, [("pkg.domain", domain), ("pkg.edge", edge)])
    assert covered == 1  # the edge module is not listed: it may speak gRPC
    assert any(":2: pkg.domain imports services.common.proto.sectorstorage.v1" in v for v in violations)
    assert any(":3: pkg.domain imports grpc.aio" in v for v in violations)
    assert any("'pkg.gone.*', which names no module" in v for v in violations)
    assert not any("edge" in v for v in violations)
