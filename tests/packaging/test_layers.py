"""The house shows the experiment: every module imports only its own layer or those below it, with no cycles.

Layers, lowest first: atomic → norms → models → tasks → records → engine | analysis → cli. ``engine`` and
``analysis`` are siblings (the loop writes records, the analysis reads them; neither imports the other). Imports
inside functions count too. Only ``normexp.cli`` may import Hydra.
"""
import ast
import tomllib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "normexp"
LAYERS = {"atomic": 0, "norms": 1, "models": 2, "tasks": 3, "records": 4, "engine": 5, "analysis": 5, "cli": 6}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = node.module
            if node.level:  # relative: resolve against the importing module's package
                base = module_name(path).split(".")
                base = base[: len(base) - node.level + (path.name == "__init__.py")]
                source = ".".join([*base, node.module] if node.module else base)
            for alias in node.names:  # `from pkg import module` depends on that module, not on the package
                sub = f"{source}.{alias.name}"
                is_module = (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").is_file() or \
                    (PACKAGE.parent / sub.replace(".", "/") / "__init__.py").is_file()
                found.add(sub if is_module else source)
    return found


def graph() -> dict[str, set[str]]:
    mods = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: {i for i in imports(p) if i.startswith("normexp")} for m, p in mods.items()}


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_no_module_imports_a_higher_layer_or_a_sibling():
    bad = []
    for mod, deps in graph().items():
        for dep in deps:
            if layer(mod) is None or layer(dep) is None:
                continue
            higher = layer(dep) > layer(mod)
            sibling = layer(dep) == layer(mod) and mod.split(".")[1] != dep.split(".")[1]
            if higher or sibling:
                bad.append(f"{mod} imports {dep}")
    assert not bad, bad


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for d in g.get(m, ()):
            d = d if d in g else d.rsplit(".", 1)[0]  # `from pkg import name` names a module or an attribute
            if d == m:  # a module running its importable self (cli.train under -m)
                continue
            if state.get(d) == 1:
                raise AssertionError(" -> ".join([*stack, d]))
            if d in g and not state.get(d):
                visit(d, [*stack, d])
        state[m] = 2

    for m in g:
        if not state.get(m):
            visit(m, [m])


def test_only_the_cli_imports_hydra():
    users = [module_name(p) for p in PACKAGE.rglob("*.py")
             if any(i.split(".")[0] == "hydra" for i in imports(p)) and not module_name(p).startswith("normexp.cli")]
    assert not users, users


def test_every_package_is_in_the_wheel_list():
    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    present = {module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert present | {"normexp.conf"} == listed
