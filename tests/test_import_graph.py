"""The import graph of keras_lincae: no cycles, layering rules, backends in one place, a quiet import.

Every module is parsed with `ast`; module-level and function-local imports both count.
`from keras_lincae.pkg import mod` is an edge to `keras_lincae.pkg.mod` when that is a
module, else to `keras_lincae.pkg`; a package's `__init__` is the node of its own name.
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import keras_lincae

PACKAGE_DIR = Path(keras_lincae.__file__).parent
PROBE = PACKAGE_DIR / "testing" / "import_probe.py"
BACKENDS = ("jax", "jaxlib", "tensorflow", "torch")

# Modules that may import a backend framework besides keras_lincae.backend_dispatch (a name
# covers its submodules), each for a job only that framework does, on every Keras backend.
BACKEND_ALLOW_LIST = {
    "keras_lincae.export": {"tensorflow"},  # TF Serving SavedModels are a TensorFlow format
    "keras_lincae.data.pipelines": {"tensorflow"},  # the tf.data input pipeline
    "keras_lincae.training.callbacks": {"tensorflow"},  # TensorBoard event files (tf.summary)
    "keras_lincae.models.official_checkpoint": {"torch"},  # official checkpoints are torch .pth
    "keras_lincae.testing.official_oracle": {"torch"},  # the official reference model is PyTorch
    "keras_lincae.testing.frontend_trace": {"tensorflow"},  # traces the frontend as the export does
    "keras_lincae.testing.tf_only_client": {"tensorflow"},  # serves an export with TensorFlow alone
}

# (importer prefix, imported prefixes it must not use): lower layers never import upper ones.
FORBIDDEN = [
    ("keras_lincae.models", ("keras_lincae.training",)),
    ("keras_lincae.layers", ("keras_lincae.models", "keras_lincae.training", "keras_lincae.data",
                             "keras_lincae.evaluation")),
]


def module_name(path):
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def find_modules():
    """`{module name: path}` of every .py file in keras_lincae."""
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def is_package(modules, name):
    return modules[name].name == "__init__.py"


def imports_of(name, path, modules):
    """`[(imported name, line, local)]`: every import in the module; `local` marks a function-local one."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if is_package(modules, name) else name.rpartition(".")[0]
    found = []

    def visit(node, local):
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, inner) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                    source = f"{base}.{child.module}" if child.module else base
                else:
                    source = child.module
                for alias in child.names:
                    candidate = f"{source}.{alias.name}"
                    found.append((candidate if candidate in modules else source, child.lineno, inner))
            elif (isinstance(child, ast.Call) and getattr(child.func, "attr", getattr(child.func, "id", None))
                  == "import_module" and child.args and isinstance(child.args[0], ast.Constant)
                  and isinstance(child.args[0].value, str)):
                found.append((child.args[0].value, child.lineno, inner))
            visit(child, inner)

    visit(tree, False)
    return found


def build_graph():
    """`(edges, external)`: keras_lincae edges `{src: {dst: [where]}}` and other imports `{src: [(top, where)]}`."""
    modules = find_modules()
    edges = {name: {} for name in modules}
    external = {name: [] for name in modules}
    for name, path in modules.items():
        for imported, line, local in imports_of(name, path, modules):
            where = f"{path.relative_to(PACKAGE_DIR.parent)}:{line}" + (" (function-local)" if local else "")
            if imported == "keras_lincae" or imported.startswith("keras_lincae."):
                while imported not in modules:  # `import keras_lincae.pkg.Name` -> the module that holds it
                    imported = imported.rpartition(".")[0]
                if imported != name:
                    edges[name].setdefault(imported, []).append(where)
            else:
                external[name].append((imported.split(".")[0], where))
    return edges, external


def find_cycles(edges):
    """One shortest cycle through each strongly connected component of more than one module."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def connect(node):  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(edges)))
    for node in sorted(edges):
        if node not in index:
            connect(node)
    cycles = []
    for component in components:
        start = min(component)
        paths, seen = [[start]], {start}
        while paths:  # breadth-first: the shortest way back to `start` inside the component
            path = paths.pop(0)
            nxt_nodes = sorted(n for n in edges[path[-1]] if n in component)
            if start in nxt_nodes:
                cycles.append(path + [start])
                break
            for n in nxt_nodes:
                if n not in seen:
                    seen.add(n)
                    paths.append(path + [n])
    return cycles


def describe(path, edges):
    return "\n".join(f"    {a} -> {b}   [{'; '.join(edges[a][b])}]" for a, b in zip(path, path[1:]))


def test_no_import_cycles():
    edges, _ = build_graph()
    cycles = find_cycles(edges)
    message = "\n".join(f"  cycle {i + 1}:\n{describe(c, edges)}" for i, c in enumerate(cycles))
    assert not cycles, f"import cycles among keras_lincae modules:\n{message}"


def test_layers_and_models_do_not_import_upper_layers():
    edges, _ = build_graph()
    problems = [
        f"  {src} imports {dst}   [{'; '.join(where)}]"
        for src, targets in sorted(edges.items())
        for dst, where in sorted(targets.items())
        for importer, banned in FORBIDDEN
        if (src == importer or src.startswith(importer + "."))
        and any(dst == b or dst.startswith(b + ".") for b in banned)
    ]
    assert not problems, "forbidden import directions:\n" + "\n".join(problems)


def allowed_backends(module):
    if module == "keras_lincae.backend_dispatch" or module.startswith("keras_lincae.backend_dispatch."):
        return set(BACKENDS)
    return set().union(*(pkgs for prefix, pkgs in BACKEND_ALLOW_LIST.items()
                         if module == prefix or module.startswith(prefix + ".")))


def test_backend_frameworks_only_in_backend_dispatch_and_the_allow_list():
    _, external = build_graph()
    problems = [f"  {module} imports {top}   [{where}]"
                for module, imports in sorted(external.items())
                for top, where in imports
                if top in BACKENDS and top not in allowed_backends(module)]
    assert not problems, ("jax/tensorflow/torch imported outside keras_lincae/backend_dispatch/ and "
                          "BACKEND_ALLOW_LIST:\n" + "\n".join(problems))


def test_allow_list_names_existing_modules():
    modules = find_modules()
    stale = [m for m in BACKEND_ALLOW_LIST if not any(n == m or n.startswith(m + ".") for n in modules)]
    assert not stale, f"BACKEND_ALLOW_LIST names modules that do not exist: {stale}"


def test_importing_the_package_writes_no_environment_and_imports_no_framework():
    """In a fresh interpreter without the variables a Keras or TF user sets, `import keras_lincae`
    leaves os.environ as it was and imports neither Keras nor a backend."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL", "XLA_FLAGS", "KERAS_HOME")}
    env["PYTHONPATH"] = str(PACKAGE_DIR.parent)
    done = subprocess.run([sys.executable, "-P", str(PROBE)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["environ_changes"] == {}, f"import keras_lincae wrote os.environ: {report['environ_changes']}"
    assert report["heavy_modules"] == [], f"import keras_lincae imported {report['heavy_modules']}"


def test_the_graph_sees_local_imports_and_relative_forms(tmp_path):
    """The parser counts function-local and relative imports, and resolves `from pkg import mod`."""
    modules = find_modules()
    source = tmp_path / "probe.py"
    source.write_text("from keras_lincae.layers import conv\n"
                      "from . import norm\n"
                      "def f():\n    import keras_lincae.models.encoder\n"
                      "    from keras_lincae.layers.conv import PaddedConv\n")
    modules_with_probe = dict(modules, **{"keras_lincae.layers.probe": source})
    found = imports_of("keras_lincae.layers.probe", source, modules_with_probe)
    assert found == [("keras_lincae.layers.conv", 1, False), ("keras_lincae.layers.norm", 2, False),
                     ("keras_lincae.models.encoder", 4, True), ("keras_lincae.layers.conv", 5, True)]
    assert find_cycles({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}, "d": {"a": []}}) == [["a", "b", "c", "a"]]
