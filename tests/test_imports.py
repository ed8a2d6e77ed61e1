"""The library has no import cycles (imports written inside functions count), memory imports nothing
from train, and the hardware catalogue imports nothing from the package (DESIGN.md, wave 3)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "astrobio_lib"


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package modules it imports, at any depth of its code (functions included)."""
    pkg = root.name
    modules = {}
    for f in root.rglob("*.py"):
        name = ".".join(f.relative_to(root.parent).with_suffix("").parts)
        modules[name[:-9] if name.endswith(".__init__") else name] = f

    def resolve(name: str):
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {m: set() for m in modules}
    for m, f in modules.items():
        for node in ast.walk(ast.parse(f.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = m.split(".") if f.name == "__init__.py" else m.split(".")[:-1]
                    base = base[:len(base) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            for t in targets:
                if t == pkg or t.startswith(pkg + "."):
                    r = resolve(t)
                    if r and r != m and not m.startswith(r + "."):  # a package's own submodules: not an edge
                        edges[m].add(r)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_inside_the_package():
    found = cycles(import_graph())
    assert not found, "import cycles (imports inside functions count): " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_check_finds_a_cycle(tmp_path):
    pkg = tmp_path / "astrobio_lib"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from astrobio_lib import b\n")
    (pkg / "b.py").write_text("def f():\n    from astrobio_lib.a import x\n")
    assert cycles(import_graph(pkg)) == [["astrobio_lib.a", "astrobio_lib.b"]]


def _reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in edges[todo.pop()]:
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def test_layering_rules():
    edges = import_graph()
    memory_modules = [m for m in edges if m == "astrobio_lib.memory" or m.startswith("astrobio_lib.memory.")]
    for m in memory_modules:
        assert not [t for t in edges[m] if t.startswith("astrobio_lib.train")], f"{m} imports from train"
    assert edges["astrobio_lib.memory.hardware"] == set(), "the hardware catalogue imports from the package"
    assert edges["astrobio_lib.tasks.spec"] == set()
    # nothing outside tasks/ imports a task's own modules (the registry loads them by name)
    outside = {m: {t for t in ts if t.startswith("astrobio_lib.tasks.") and t != "astrobio_lib.tasks.spec"}
               for m, ts in edges.items() if not m.startswith("astrobio_lib.tasks")}
    assert not {m: ts for m, ts in outside.items() if ts}
    # the configuration validates a task name without importing torch-heavy layers
    assert not {t for t in _reachable(edges, "astrobio_lib.config") if t.startswith(("astrobio_lib.train",
                                                                                       "astrobio_lib.evaluate"))}


def test_memory_public_names_import_from_the_package():
    code = ("from astrobio_lib import memory; import astrobio_lib.memory as m; "
            "names = ['estimate', 'plans', 'probe', 'measure', 'preflight', 'recommend', 'auto_micro_batch', "
            "'DEVICES', 'Plan', 'BatchShape', 'Hardware', 'hardware_from', 'time_per_step', 'step_phases', "
            "'check_fit', 'breakdown_table', 'MemoryBudgetError', 'flops_per_sample', 'mfu']; "
            "missing = [n for n in names if not hasattr(memory, n)]; assert not missing, missing; "
            "assert set(m.__all__) <= set(dir(m))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
