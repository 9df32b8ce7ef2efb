"""The package's shape: imports only go down, nothing outside nmt/models asks which architecture it holds, the
library never prints, modules stay readable, and the distribution installs every package folder.

Layers, top to bottom: the CLI -> nmt.api (the Python API; the `nmt` package loads it lazily), nmt.benchmark
-> nmt.{training, decoding, evaluation}, nmt.plots -> nmt.checkpoint -> nmt.models -> nmt.data -> the small
shared modules (nmt.config, nmt.errors, nmt.files, ...).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 500  # a library module longer than this is probably more than one concern
ARCHITECTURE_NAMES = ("rnn", "rnnsearch", "transformer")
CONCRETE_MODELS = ("nmt.models.rnn", "nmt.models.rnnsearch", "nmt.models.transformer")


def library_modules() -> dict[str, Path]:
    """Module name -> file, for nmt/ (the library) and cli/ (installed as nmt.cli)."""
    modules = {}
    for folder, package in ((ROOT / "nmt", "nmt"), (ROOT / "cli", "nmt.cli")):
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


MODULES = library_modules()


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(module: str) -> set[str]:
    """Every module that `module` imports (full dotted names, relative imports resolved), imports under
    `if TYPE_CHECKING:` included: a type-checking guard must not hide a dependency that goes up."""
    path = MODULES[module]
    is_package = path.name == "__init__.py"
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                here = here[: len(here) - (node.level - 1)]
                base = ".".join([*here, base] if base else here)
            for alias in node.names:  # `from package import module` imports the module, not the package
                names.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return names


def internal_imports(module: str) -> set[str]:
    """The project's own modules that `module` imports."""
    found = set()
    for name in imported_names(module):
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)
    return found


def imports_of(prefix: str) -> dict[str, set[str]]:
    return {m: internal_imports(m) for m in MODULES if m == prefix or m.startswith(prefix + ".")}


def under(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def offenders(importers: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in imports_of(importers).items()
        for target in targets
        if under(target, *forbidden)
    )


def test_the_module_list_is_read():
    assert {"nmt.models.base", "nmt.training.trainer", "nmt.cli.main", "nmt.data.special"} <= set(MODULES)


def test_the_library_never_imports_the_cli():
    library = {m: t for m, t in imports_of("nmt").items() if not under(m, "nmt.cli")}
    assert not [f"{m} imports {t}" for m, targets in library.items() for t in targets if under(t, "nmt.cli")]


@pytest.mark.parametrize(
    ("importers", "forbidden"),
    [
        ("nmt.api", ("nmt.benchmark",)),
        ("nmt.models", ("nmt.training", "nmt.decoding", "nmt.evaluation", "nmt.benchmark", "nmt.checkpoint")),
        ("nmt.data", ("nmt.models", "nmt.training", "nmt.decoding", "nmt.evaluation", "nmt.benchmark")),
        ("nmt.decoding", ("nmt.training", "nmt.evaluation", "nmt.benchmark", "nmt.plots")),
        ("nmt.evaluation", ("nmt.models", "nmt.training", "nmt.decoding", "nmt.benchmark", "nmt.checkpoint")),
        ("nmt.training", ("nmt.evaluation", "nmt.benchmark", "nmt.plots")),
        ("nmt.config", ("nmt.data", "nmt.models", "nmt.training", "nmt.decoding", "nmt.evaluation")),
        # shared by training's dev BLEU and evaluation, so below both
        ("nmt.languages", ("nmt.data", "nmt.models", "nmt.training", "nmt.decoding", "nmt.evaluation")),
        ("nmt.errors", ("nmt.",)),
        ("nmt.data.special", ("nmt.",)),
    ],
)
def test_imports_only_go_down(importers, forbidden):
    assert offenders(importers, forbidden) == []


def test_the_package_facade_loads_the_api_lazily():
    """`nmt/__init__.py` imports nmt.api in a function (its `__getattr__`), never at module level; at module
    level only the leaf nmt.version."""
    tree = ast.parse(MODULES["nmt"].read_text(encoding="utf-8"))
    top_level = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert [ast.unparse(node) for node in top_level if "nmt" in ast.unparse(node)] == [
        "from nmt.version import __version__"
    ]
    assert internal_imports("nmt") <= {"nmt.api", "nmt.version"}
    assert internal_imports("nmt.version") == set()


def test_no_library_module_imports_the_package_facade():
    """The version comes from nmt.version: a module that imported `nmt` itself would sit in a circle with
    nmt.api, which imports the whole library."""
    importers = [m for m in MODULES if m != "nmt" and "nmt" in internal_imports(m)]
    assert importers == []


def test_nothing_but_the_cli_and_the_package_facade_imports_the_api():
    importers = {line.split()[0] for line in offenders("nmt", ("nmt.api",))}
    assert {m for m in importers if not under(m, "nmt.cli") and m != "nmt"} == set()


def test_nothing_but_the_cli_imports_the_benchmark():
    importers = {line.split()[0] for line in offenders("nmt", ("nmt.benchmark",))}
    assert {m for m in importers if not under(m, "nmt.benchmark", "nmt.cli")} == set()


def test_evaluation_needs_no_torch():
    heavy = {
        m for m in imports_of("nmt.evaluation") if "torch" in {n.split(".")[0] for n in imported_names(m)}
    }
    assert heavy == set()


def test_decoding_never_names_a_concrete_model():
    assert offenders("nmt.decoding", CONCRETE_MODELS) == []
    model_classes = {"RNNEncoderDecoder", "RNNSearch", "Transformer"}
    for module in imports_of("nmt.decoding"):
        tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
        named = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        named |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert named & model_classes == set(), module


def test_the_import_graph_has_no_circles():
    graph = {m: internal_imports(m) for m in MODULES}
    # Tarjan's strongly connected components: every component of more than one module is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert circles == []


DISPATCH = re.compile(
    r"isinstance\([^)]*Config\)"  # asking a config's type
    r"|\barch\s*[!=]=\s*['\"]"  # comparing an architecture's name
    r"|['\"](" + "|".join(ARCHITECTURE_NAMES) + r")['\"]\s*(==|!=|in\b)"
    r"|(==|!=)\s*['\"](" + "|".join(ARCHITECTURE_NAMES) + r")['\"]"
)


def test_nothing_outside_the_models_dispatches_on_an_architecture():
    found = []
    for module, path in MODULES.items():
        if under(module, "nmt.models"):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if DISPATCH.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == []


def test_the_library_never_prints():
    found = []
    for module, path in MODULES.items():
        if under(module, "nmt.cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                found.append(f"{module}:{node.lineno}")
    assert found == []


def test_library_modules_stay_readable():
    long = {
        module: n
        for module, path in MODULES.items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
        and not under(module, "nmt.cli")
    }
    assert long == {}


def import_blocks(function: ast.AST) -> list[list[ast.stmt]]:
    """The runs of consecutive import statements anywhere inside `function`."""
    blocks = []
    for node in ast.walk(function):
        for body in (getattr(node, name, None) for name in ("body", "orelse", "finalbody", "handlers")):
            run: list[ast.stmt] = []
            for statement in body if isinstance(body, list) else []:
                if isinstance(statement, (ast.Import, ast.ImportFrom)):
                    run.append(statement)
                elif run:
                    blocks.append(run)
                    run = []
            if run:
                blocks.append(run)
    return blocks


def test_an_import_inside_a_function_says_why():
    """Imports belong at the top; one inside a function defers a heavy or optional dependency, and a comment
    says so, on its block of imports or on the line just above it."""
    found = []
    for path in MODULES.values():
        lines = path.read_text(encoding="utf-8").splitlines()
        for function in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for block in import_blocks(function):
                    text = lines[max(0, block[0].lineno - 2) : block[-1].end_lineno]
                    if not any("#" in line for line in text):
                        found.append(f"{path.relative_to(ROOT)}:{block[0].lineno}")
    assert found == []


def test_the_distribution_lists_every_package_folder():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    packages = {m for m, path in MODULES.items() if path.name == "__init__.py"}
    assert set(settings["packages"]) == packages
    assert settings["package-dir"]["nmt.cli"] == "cli"  # nothing named `cli` lands in site-packages


def test_the_readme_layout_names_every_module():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("```")[1]  # the tree drawn in the Layout section
    folders = {path.parent.name for path in (ROOT / "nmt").rglob("*.py")} | {"cli", "data", "tests", "docs"}
    missing = [f"{folder}/" for folder in sorted(folders - {"nmt"}) if f"{folder}/" not in layout]
    library = [
        path
        for module, path in MODULES.items()
        if path.name != "__init__.py" and not under(module, "nmt.cli")
    ]
    missing += [str(path.relative_to(ROOT)) for path in library if not re.search(rf"\b{path.stem}\b", layout)]
    assert missing == []
