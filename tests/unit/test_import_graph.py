"""The house rules of ../shared/docs/architecture.md, checked on every import we write.

Every import points down: the model imports nothing of ours; protocols and storage import
only the model; the simulator stands on protocols; the collector on all of them; inside
the collector each room imports only the rooms below it. No module imports itself back
through any chain, function-local imports included.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"model": 0, "protocols": 1, "storage": 1, "simulator": 2, "collector": 3,
            "bench": 4}
COLLECTOR_ROOMS = {"__init__": 0, "errors": 0, "config": 1, "ops": 1, "acquisition": 2,
                   "phasors": 2, "flags": 3, "field": 3, "vee": 3, "billing": 4, "runtime": 5,
                   "exports": 5, "api": 6, "cli": 7}
"""Rooms of equal rank do not import each other: they meet through storage. The CLI
stands on the API only to serve it (`collector api`)."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def our_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found[module_name(path)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import in the file, at any depth."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _ours(alias.name, known, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                target = f"{base}.{alias.name}"
                yield from _ours(target if target in known else base, known, node.lineno)


def _ours(target: str, known: set[str], line: int) -> Iterator[tuple[str, int]]:
    while target and target not in known:
        target = target.rpartition(".")[0]
    if target:
        yield target, line


def rank(module: str) -> tuple[str, int, str, int]:
    """(package, its rank, room, the room's rank inside the package)."""
    parts = module.split(".")
    package = parts[0]
    if package != "collector":
        return package, PACKAGES[package], "", 0  # one room: its modules import freely
    room = parts[1] if len(parts) > 1 else "__init__"
    return package, PACKAGES[package], room, COLLECTOR_ROOMS[room]


def graph() -> dict[str, dict[str, int]]:
    modules = our_modules()
    known = set(modules)
    return {name: {target: line for target, line in imports_of(name, path, known)
                   if target != name}
            for name, path in modules.items()}


def test_every_collector_module_belongs_to_a_declared_room() -> None:
    rooms = {name.split(".")[1] for name in our_modules()
             if name.startswith("collector.")}
    assert rooms <= set(COLLECTOR_ROOMS), rooms - set(COLLECTOR_ROOMS)


def test_no_import_points_upward_or_sideways() -> None:
    wrong = []
    for importer, targets in graph().items():
        pkg, pkg_rank, room, room_rank = rank(importer)
        for target, line in targets.items():
            t_pkg, t_pkg_rank, t_room, t_room_rank = rank(target)
            if t_pkg != pkg:
                ok = t_pkg_rank < pkg_rank
            else:
                ok = t_room == room or t_room_rank < room_rank
            if not ok:
                wrong.append(f"{importer} (line {line}) imports {target}")
    assert not wrong, "imports against the architecture:\n" + "\n".join(sorted(wrong))


def test_there_is_no_import_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []
    cycles: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in edges.get(node, {}):
            if state.get(nxt) == 1:
                cycles.append(" → ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_model_imports_nothing_of_ours() -> None:
    outside = {t for name, targets in graph().items() if name.split(".")[0] == "model"
               for t in targets if not t.startswith("model")}
    assert not outside
