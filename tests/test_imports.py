"""Dependencies follow the data flow: the library ``tierenv`` never imports ``agents`` (the
controllers, policies and training built on it), ``experiments`` or stable-baselines3.

Importing every module of ``tierenv`` (in a fresh interpreter, so that nothing another test
imported counts) loads none of them. The command-line entry points orchestrate agents and
experiments and may import them inside the functions that need them: the ``tierenv`` CLI
(``tierenv.cli``, ``tierenv.__main__``) is not checked, and ``tierenv.daemon`` (``tierenvd``)
may do so in ``ALLOWED_LAZY`` only. ``__main__`` modules run their command when imported,
so they are read but not imported.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import tierenv

FORBIDDEN = ("agents", "experiments", "stable_baselines3")
#: Entry points, not library modules: neither imported nor read here.
ENTRY_POINTS = ("tierenv.cli", "tierenv.__main__")
#: Library modules allowed to import a forbidden package inside a function: (module,
#: function) -> why.
ALLOWED_LAZY = {
    # the daemon's command line builds the controller named by --controller/--policy
    ("tierenv.daemon", "_controller"): "agents.controllers.make_controller",
}
PACKAGE_ROOT = Path(tierenv.__file__).parent

IMPORT_EVERYTHING = """
import importlib, json, pkgutil, sys

FORBIDDEN = {forbidden!r}
SKIP = {skip!r}


def skipped(name):
    main = name.rpartition(".")[2] == "__main__"  # runs its command when imported
    return main or any(name == s or name.startswith(s + ".") for s in SKIP)


def loaded():
    return sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)


# Walked by hand rather than with pkgutil.walk_packages, which imports every package it
# finds (the skipped ones too) to look inside it.
names, culprits, pending = [], {{}}, [importlib.import_module("tierenv")]
while pending:
    package = pending.pop()
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if skipped(info.name):
            continue
        before = set(loaded())
        module = importlib.import_module(info.name)
        names.append(info.name)
        new = sorted(set(loaded()) - before)
        if new:
            culprits[info.name] = new
        if info.ispkg:
            pending.append(module)
print(json.dumps({{"modules": names, "culprits": culprits, "loaded": loaded()}}))
"""


def test_importing_every_tierenv_module_imports_no_agents_nor_sb3():
    code = IMPORT_EVERYTHING.format(forbidden=FORBIDDEN, skip=ENTRY_POINTS)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["culprits"] == {}, report["culprits"]  # the module that imported each first
    assert report["loaded"] == []
    # the walk reached the modules that used to import them
    for name in ("tierenv.daemon.loop", "tierenv.host.backend", "tierenv.envs.vector"):
        assert name in report["modules"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _forbidden_imports(tree: ast.Module) -> list[tuple[str | None, int, str]]:
    """(enclosing function or None at module level, line, imported module) of every import of
    a forbidden package."""
    found: list[tuple[str | None, int, str]] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, function or child.name)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                if isinstance(child, ast.Import):
                    targets = [alias.name for alias in child.names]
                else:  # relative imports stay inside tierenv
                    targets = [child.module] if child.level == 0 and child.module else []
                found.extend(
                    (function, child.lineno, target)
                    for target in targets
                    if target.split(".")[0] in FORBIDDEN
                )
            visit(child, function)

    visit(tree, None)
    return found


def test_no_tierenv_module_imports_agents_except_the_entry_points():
    """Also the imports inside functions, which importing the modules does not run."""
    offending = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        module = _module_name(path)
        if any(module == e or module.startswith(e + ".") for e in ENTRY_POINTS):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for function, line, target in _forbidden_imports(tree):
            if (module, function) not in ALLOWED_LAZY:
                offending.append(f"{path.relative_to(PACKAGE_ROOT.parent)}:{line}: {target}")
    assert offending == []
