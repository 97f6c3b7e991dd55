"""Checks the import rules of architecture.toml: for every module of a listed package, every
import of one of this project's packages must be the package itself or one it may import
(`may_import` names packages or single modules), and no imported name may match one of the
package's `may_not_import` patterns (fnmatch, on the full dotted name: e.g. a module's SQL text);
and every module the `[grpc_free]` table lists (module globs) imports nothing its `forbid` globs
match (grpc, the generated stubs): the domain code stays callable without messages.
Prints each violation as `file:line: ...` and exits 1 if there is any."""

from __future__ import annotations

import ast
import fnmatch
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def owner(module: str, packages: list[str]) -> str | None:
    """The longest listed package `module` belongs to."""
    best = None
    for package in packages:
        if (module == package or module.startswith(package + ".")) and (best is None or len(package) > len(best)):
            best = package
    return best


def imported(tree: ast.AST, module: str) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.rsplit(".", node.level)[0]
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            out.extend((node.lineno, f"{name}.{alias.name}") for alias in node.names)
    return out


def violations_in(
    tree: ast.AST, module: str, package: str, rule: dict[str, list[str]], project: list[str], rel: str
) -> list[str]:
    """The rule's violations by one module of `package` (its parsed source `tree`)."""
    allowed = {package, *rule["may_import"]}
    forbidden = rule.get("may_not_import", [])
    out = []
    for line, name in imported(tree, module):
        banned = next((pattern for pattern in forbidden if fnmatch.fnmatchcase(name, pattern)), None)
        if banned is not None:
            out.append(f"{rel}:{line}: {package} imports {name} (architecture.toml forbids {banned!r})")
            continue
        target = owner(name, project)
        if target is None or owner(target, list(allowed)) is not None:
            continue
        # `from services.manager import x` names the parent package; count the module.
        if any(owner(name, [a]) for a in allowed):
            continue
        out.append(
            f"{rel}:{line}: {package} imports {name} (architecture.toml allows {sorted(allowed - {package}) or 'nothing else'})"
        )
    return out


def module_files(package: str) -> list[tuple[str, Path]]:
    """(module name, path) of every module of a package, generated code left out."""
    out = []
    for path in sorted((ROOT / package.replace(".", "/")).rglob("*.py")):
        rel = path.relative_to(ROOT)
        if "proto" in rel.parts:  # generated code
            continue
        out.append((".".join(rel.with_suffix("").parts), path))
    return out


def grpc_free_violations(table: dict[str, list[str]], modules: list[tuple[str, Path]]) -> tuple[list[str], int]:
    """Violations of the `[grpc_free]` table among `modules`, and how many modules it covers. A
    glob that names no module is a violation too (a typo or a moved module would otherwise
    silently check nothing)."""
    forbid, patterns = table.get("forbid", []), table.get("modules", [])
    violations = []
    covered: dict[str, Path] = {}
    for pattern in patterns:
        matched = [(name, path) for name, path in modules if fnmatch.fnmatchcase(name, pattern)]
        if not matched:
            violations.append(f"architecture.toml: [grpc_free] lists {pattern!r}, which names no module")
        covered.update(matched)
    for module, path in sorted(covered.items()):
        rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        reported: set[int] = set()
        for line, name in imported(ast.parse(path.read_text(), str(rel)), module):
            if line not in reported and any(fnmatch.fnmatchcase(name, f) for f in forbid):
                reported.add(line)  # one line per import statement (`from X import a` names X and X.a)
                violations.append(
                    f"{rel}:{line}: {module} imports {name}, but [grpc_free] in architecture.toml says it must not"
                )
    return violations, len(covered)


def main() -> int:
    rules = tomllib.loads((ROOT / "architecture.toml").read_text())
    project = rules["project"]["packages"]
    violations = []
    checked = 0
    for package, rule in rules["packages"].items():
        for module, path in module_files(package):
            rel = path.relative_to(ROOT)
            checked += 1
            tree = ast.parse(path.read_text(), str(rel))
            violations.extend(violations_in(tree, module, package, rule, project, str(rel)))
    everything = [m for package in rules["packages"] for m in module_files(package)]
    free, grpc_free = grpc_free_violations(rules.get("grpc_free", {}), everything)
    violations.extend(free)
    for v in sorted(set(violations)):
        print(v)
    if violations:
        return 1
    print(f"imports: {checked} modules follow architecture.toml ({grpc_free} of them grpc-free)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
