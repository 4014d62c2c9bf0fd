"""The layout is the architecture: rooms import only downward, Dagster's internals stay in
``orchestration/``, and the README's layout and error tables describe the code as it is."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from librarian.errors import ErrorCode

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("librarian", "librarian_assets", "librarian_api")
# librarian's rooms, lowest first: a module imports only from its own rank or below.
RANKS = {"settings": 0, "errors": 0, "canonical_url": 0, "jobs": 1, "runs": 1, "storage": 2,
         "embedding": 2, "content": 3, "orchestration": 4, "cli": 5, "__main__": 5}
HANDLERS = {"ingest", "stream", "library", "search", "health", "openapi", "session", "tokens"}


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "versions" not in p.parts)


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, top_level_only: bool = False) -> list[str]:
    """Absolute module names ``path`` imports (``from . import x`` resolved)."""
    tree = ast.parse(path.read_text())
    nodes: list[ast.AST] = []
    if top_level_only:
        for node in tree.body:
            guarded = (isinstance(node, ast.If) and isinstance(node.test, ast.Name)
                       and node.test.id == "TYPE_CHECKING")
            if not guarded:
                nodes.append(node)
    else:
        nodes = list(ast.walk(tree))
    names: list[str] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _name(path).split(".")
                if path.name != "__init__.py":
                    package = package[:-1]
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base
                                                                              else []))
            names.append(base)
            names.extend(f"{base}.{alias.name}" for alias in node.names)
    return names


def _room(module: str) -> str:
    return module.split(".")[1]


def test_the_core_imports_neither_the_api_nor_the_code_location() -> None:
    bad = {_name(p): n for p in _modules("librarian") for n in _imports(p)
           if n.split(".")[0] in ("librarian_api", "librarian_assets")}
    assert bad == {}


def test_only_orchestration_touches_dagster_internals() -> None:
    outside = [p for p in _modules("librarian") if "orchestration" not in p.parts]
    internals = {_name(p): n for p in outside for n in _imports(p) if n.startswith("dagster._")}
    assert internals == {}
    # Importing the core must not pay for Dagster or Starlette (the CLI imports them lazily).
    eager = {_name(p): n for p in outside for n in _imports(p, top_level_only=True)
             if n.split(".")[0] in ("dagster", "dagster_graphql", "starlette")}
    assert eager == {}


def test_librarian_rooms_import_only_downward() -> None:
    upward = {}
    for path in _modules("librarian"):
        name = _name(path)
        if name == "librarian":
            continue
        own = RANKS[_room(name)]
        for imported in _imports(path):
            if imported.startswith("librarian.") and RANKS[_room(imported)] > own:
                upward[name] = imported
    assert upward == {}


def test_api_handlers_do_not_import_each_other() -> None:
    crossing = {}
    for path in _modules("librarian_api"):
        if path.stem not in HANDLERS:
            continue
        others = {f"librarian_api.{h}" for h in HANDLERS - {path.stem}}
        for imported in _imports(path):
            if imported in others or imported.rsplit(".", 1)[0] in others:
                crossing[path.stem] = imported
    assert crossing == {}


def _layout_block() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Layout", 1)[1]
    return section.split("```text", 1)[1].split("```", 1)[0].strip("\n").splitlines()


def _listed_paths() -> tuple[list[str], set[str]]:
    """Files the layout lists (with repeats), and folders listed without any of their files."""
    files: list[str] = []
    has_entries: dict[str, bool] = {}
    stack: list[tuple[int, str]] = []  # (indent, folder path) of the enclosing folders
    for line in _layout_block():
        indent = len(line) - len(line.lstrip(" "))
        entry = line.split()[0]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if stack:
            has_entries[stack[-1][1]] = True
        path = "/".join(([stack[-1][1]] if stack else []) + [entry.rstrip("/")])
        if entry.endswith("/"):
            stack.append((indent, path))
            has_entries.setdefault(path, False)
        else:
            files.append(path)
    return files, {folder for folder, listed in has_entries.items() if not listed}


def _needs_listing(path: Path) -> bool:
    if path.name != "__init__.py":
        return True
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
               for n in body)


def test_the_readme_layout_lists_every_module_once() -> None:
    files, leaf_folders = _listed_paths()
    repeated = {f for f in files if files.count(f) > 1}
    assert not repeated
    actual = {str(p.relative_to(ROOT)) for package in PACKAGES for p in _modules(package)
              if _needs_listing(p)
              and not any(str(p.relative_to(ROOT)).startswith(f + "/") for f in leaf_folders)}
    listed = {f for f in files if f.endswith(".py")}
    assert sorted(actual - listed) == [], "modules missing from the README's layout"
    assert sorted(listed - actual) == [], "the README's layout lists modules that do not exist"
    for folder in leaf_folders:
        assert (ROOT / folder).is_dir(), folder


def test_the_readme_error_tables_list_exactly_the_error_codes() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)` \|", section, re.M)
    assert len(documented) == len(set(documented)), "a code is documented twice"
    assert set(documented) == {code.value for code in ErrorCode}

