"""The package's shape: no import cycle (lazy imports included), streaming drives the layers without copying
their arithmetic or reaching into private names, the remote code ships every module the model imports; the sizes
that keep it readable (the model file, the model class, every function), export code in the exporter only, one
home for each distributed helper, runners that compose the scheduler instead of inheriting the model."""

import ast
import importlib
from pathlib import Path

import torch

import encodec_hf
from encodec_hf.hub_upload import REMOTE_CODE

PACKAGE = Path(encodec_hf.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = PACKAGE.parent / Path(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def package_imports(path: Path) -> set[str]:
    """Every module of the package that `path` imports, at the top or inside functions (lazy imports)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        for candidate in candidates:
            if candidate.startswith("encodec_hf") and is_module(candidate):
                found.add(candidate)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    return {module_name(path): package_imports(path) for path in PACKAGE.rglob("*.py")}


def test_import_graph_is_read():
    graph = import_graph()
    assert "encodec_hf.streaming" in graph["encodec_hf.modeling_encodec"]
    assert "encodec_hf.modeling_onnx" in graph["encodec_hf.cli.common"]  # a lazy import, inside a function
    assert "encodec_hf.ecdc.container" in graph["encodec_hf.ecdc.api"]  # a relative import from a subpackage


def test_no_import_cycle():
    graph = import_graph()
    # A package's __init__ imports its submodules by design; a cycle through it is the submodule importing the
    # package's public names, which the walk below still sees via the submodules' own edges.
    edges = {
        name: {t for t in targets if not (name + ".").startswith(t + ".") and t != name}
        for name, targets in graph.items()
    }
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycle = stack[stack.index(target) :] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if state.get(target) is None:
                visit(target)
        stack.pop()
        state[node] = 2

    for module in sorted(edges):
        if state.get(module) is None:
            visit(module)


def test_streaming_holds_no_layer_arithmetic_and_no_private_imports():
    tree = ast.parse((PACKAGE / "streaming.py").read_text())
    calls = {
        node.func.attr for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert not calls & {"conv1d", "conv_transpose1d", "lstm", "_pad1d", "pad", "elu", "group_norm"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.module in ("__future__", "chunking", "inputs"), node.module
            assert not any(alias.name.startswith("_") for alias in node.names)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
            # model._something: the stream objects use the model's public methods only
            assert not (node.value.attr == "model" and node.attr.startswith("_")), node.attr


def test_remote_code_ships_every_module_the_model_imports():
    graph = import_graph()
    needed, todo = set(), ["encodec_hf.modeling_encodec", "encodec_hf.processing", "encodec_hf.configuration_encodec"]
    while todo:
        module = todo.pop()
        if module in needed:
            continue
        needed.add(module)
        todo += graph[module]
    assert sorted(m.split(".", 1)[1] + ".py" for m in needed) == sorted(REMOTE_CODE)


def test_lazy_package_exports_what_it_lists():
    import subprocess
    import sys

    defined_here = {"register_auto_classes"}  # __init__'s own function; the rest resolve lazily
    assert sorted(encodec_hf._EXPORTS) == sorted(set(encodec_hf.__all__) - defined_here)
    for name in encodec_hf._EXPORTS:
        assert getattr(encodec_hf, name) is getattr(
            importlib.import_module(f"encodec_hf.{encodec_hf._EXPORTS[name]}"), name
        )
    # `import encodec_hf` and the command line's --help import neither torch nor transformers
    probe = (
        "import sys, encodec_hf, encodec_hf.cli; encodec_hf.cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "[]"


def test_public_names():
    for name in (
        "compress",
        "decompress",
        "compress_file",
        "decompress_file",
        "EncodecModel",
        "EncodecFeatureExtractor",
        "EncodecLanguageModel",
        "read_audio",
        "write_audio",
    ):
        assert name in encodec_hf.__all__ and hasattr(encodec_hf, name), name
    assert (PACKAGE / "py.typed").is_file()


def test_no_dependency_brings_torchaudio():
    """torchaudio has no CPU build on our machines and breaks `import transformers` once installed: no dependency
    list of this package names it, and no installed distribution those lists reach requires it (the references,
    EnCodec 0.1.1 and audiocraft 1.3.0, which do, are installed with --no-deps and are not reached)."""
    from importlib import metadata
    from pathlib import Path

    import tomllib
    from packaging.requirements import Requirement

    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    lists = [project["dependencies"], *project["optional-dependencies"].values()]
    todo = [Requirement(entry) for entry in lists for entry in entry]
    assert not any(req.name.lower() == "torchaudio" for req in todo)
    seen = set()
    while todo:
        requirement = todo.pop()
        name = requirement.name.lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue  # an optional dependency not installed here
        for entry in map(Requirement, requires):
            wanted = entry.marker is None or any(
                entry.marker.evaluate({"extra": extra}) for extra in requirement.extras or {""}
            )
            if wanted:
                assert entry.name.lower() != "torchaudio", f"{requirement.name} requires {entry}"
                todo.append(entry)
    assert {"transformers", "torchmetrics", "onnxscript"} <= seen  # the walk reached the lists' packages


def definitions() -> list[tuple[str, ast.AST]]:
    """(module, node) for every function and class of the package, nested ones included."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found.append((module_name(path), node))
    return found


def lines(node: ast.AST) -> int:
    return node.end_lineno - node.lineno + 1


def test_sizes_a_newcomer_can_read():
    assert len((PACKAGE / "modeling_encodec.py").read_text().splitlines()) <= 800
    classes = {node.name: node for module, node in definitions() if module == "encodec_hf.modeling_encodec"}
    assert lines(classes["EncodecModel"]) <= 400
    long = [
        f"{module}.{node.name}: {lines(node)} lines"
        for module, node in definitions()
        if not isinstance(node, ast.ClassDef) and lines(node) > 100
    ]
    assert not long, long


def test_export_forms_live_in_the_exporter():
    """The layers know offline, streaming and training: no check for export outside the export code."""
    for path in PACKAGE.rglob("*.py"):
        if path.name in ("exporting.py", "modeling_onnx.py"):
            continue
        text = path.read_text()
        for marker in ("is_exporting", "is_in_onnx_export", "torch.onnx", "torch.export"):
            assert marker not in text, f"{path.name} mentions {marker}"


def test_each_distributed_helper_is_defined_once():
    calls = {"init_process_group", "barrier", "all_reduce", "broadcast", "get_rank", "get_world_size"}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "distributed.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in calls:
                assert not (isinstance(node.value, ast.Name) and node.value.id == "dist"), (path.name, node.attr)
                assert not (isinstance(node.value, ast.Attribute) and node.value.attr == "distributed"), (
                    path.name,
                    node.attr,
                )
    names = [node.name for module, node in definitions() if isinstance(node, ast.FunctionDef)]
    for helper in ("rank_and_world", "barrier", "broadcast_from_rank0", "average_across_ranks", "sum_across_ranks"):
        assert names.count(helper) == 1, helper


def test_runners_compose_the_scheduler_instead_of_inheriting_the_model():
    from encodec_hf.modeling_encodec import EncodecModel
    from encodec_hf.modeling_onnx import OnnxEncodecModel, OpenVINOEncodecModel

    for runner in (OnnxEncodecModel, OpenVINOEncodecModel):
        assert not issubclass(runner, (EncodecModel, torch.nn.Module))
    # nothing refused: the one NotImplementedError is the abstract `_run` each runtime's class fills in
    source = ast.parse((PACKAGE / "modeling_onnx.py").read_text())
    refusals = [
        node
        for node in ast.walk(source)
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and "NotImplementedError" in ast.dump(node)
    ]
    assert not refusals


def test_one_command_per_module():
    from encodec_hf import cli

    modules = sorted(path.stem for path in (PACKAGE / "cli").glob("*_command.py"))
    assert modules == sorted(module.__name__.rsplit(".", 1)[1] for module in cli.COMMANDS)
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert sorted(commands) == sorted(name[: -len("_command")] for name in modules)
    for module in cli.COMMANDS:  # the parser beside its handler: the handler the parser names is the module's
        name = module.__name__.rsplit(".", 1)[1][: -len("_command")]
        assert commands[name].get_default("func").__module__ == module.__name__
