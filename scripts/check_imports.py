"""Checks the import rules of architecture.toml: for every module of a listed package, every
import of one of this project's packages must be the package itself or one it may import
(`may_import` names packages or single modules), and no imported name may match one of the
package's `may_not_import` patterns (fnmatch, on the full dotted name: e.g. a module's SQL text).
Prints each violation as `file:line: package imports X` and exits 1 if there is any."""

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


def main() -> int:
    rules = tomllib.loads((ROOT / "architecture.toml").read_text())
    project = rules["project"]["packages"]
    violations = []
    checked = 0
    for package, rule in rules["packages"].items():
        folder = ROOT / package.replace(".", "/")
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(ROOT)
            if "proto" in rel.parts:  # generated code
                continue
            module = ".".join(rel.with_suffix("").parts)
            checked += 1
            tree = ast.parse(path.read_text(), str(rel))
            violations.extend(violations_in(tree, module, package, rule, project, str(rel)))
    for v in sorted(set(violations)):
        print(v)
    if violations:
        return 1
    print(f"imports: {checked} modules follow architecture.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
