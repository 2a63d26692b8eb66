"""The package's shape the architecture promises: imports run one way, model modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[1] / "engine"
MAX_MODEL_LINES = 400


def _imports(path: Path) -> set[str]:
    """Every module a file imports, absolute or relative, resolved to a dotted name."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(ENGINE.parent).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_only_runtimes_and_the_shells_import_the_runtimes() -> None:
    offenders = []
    for path in sorted(ENGINE.rglob("*.py")):
        rel = path.relative_to(ENGINE)
        # The CLI, the API and `make demo-live` are shells
        if rel.parts[0] in ("runtime", "api") or rel in (Path("cli.py"), Path("live/demo.py")):
            continue
        bad = sorted(n for n in _imports(path) if n == "engine.runtime" or n.startswith("engine.runtime."))
        if bad:
            offenders.append(f"engine/{rel}: {', '.join(bad)}")
    assert not offenders, "the core and adapters import a runtime:\n" + "\n".join(offenders)


def test_model_modules_stay_small() -> None:
    long = [f"{p.relative_to(ENGINE.parent)}: {n} lines"
            for p in sorted((ENGINE / "models").rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_MODEL_LINES]
    assert not long, f"files under engine/models/ over {MAX_MODEL_LINES} lines:\n" + "\n".join(long)
