"""The app's code stays easy to read and to carry on: no module over 500 lines, no
function over 60 lines, no import circle among the app's modules (erpnext_streaming/,
without its FrappeTestCase tests). Pure ast: nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "erpnext_streaming"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def _sources() -> dict[str, Path]:
	"""{dotted module name: path} of the app's Python files."""
	found = {}
	for path in sorted(PACKAGE.rglob("*.py")):
		relative = path.relative_to(ROOT).with_suffix("")
		if relative.parts[:2] == ("erpnext_streaming", "tests"):
			continue
		parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
		found[".".join(parts)] = path
	return found


SOURCES = _sources()
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in SOURCES.items()}


def _where(name: str) -> str:
	return str(SOURCES[name].relative_to(ROOT))


def _imported(module: str, tree: ast.Module) -> set[str]:
	"""The app's modules `module` imports, anywhere in it (a function-level import closes
	a circle as surely as a top-level one): `import a.b`, `from a.b import c` (a.b, and
	a.b.c when c is a module), relative imports resolved."""
	package = module if SOURCES[module].name == "__init__.py" else module.rpartition(".")[0]
	targets: set[str] = set()
	for node in ast.walk(tree):
		if isinstance(node, ast.Import):
			targets.update(alias.name for alias in node.names)
		elif isinstance(node, ast.ImportFrom):
			base = node.module or ""
			if node.level:
				anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
				base = ".".join([*anchor, *([base] if base else [])])
			targets.add(base)
			targets.update(f"{base}.{alias.name}" for alias in node.names)
	return {t for t in targets if t in SOURCES and t != module}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
	"""The strongly connected components with more than one module (Tarjan)."""
	index: dict[str, int] = {}
	low: dict[str, int] = {}
	stack: list[str] = []
	on_stack: set[str] = set()
	found: list[list[str]] = []

	def visit(node: str) -> None:
		index[node] = low[node] = len(index)
		stack.append(node)
		on_stack.add(node)
		for target in sorted(graph[node]):
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
				found.append(sorted(component))

	for node in sorted(graph):
		if node not in index:
			visit(node)
	return found


def test_no_module_over_500_lines():
	long = {
		_where(name): length
		for name, path in SOURCES.items()
		if (length := len(path.read_text().splitlines())) > MAX_MODULE_LINES
	}
	assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_over_60_lines():
	long = {
		f"{_where(name)}:{node.lineno} {node.name}": node.end_lineno - node.lineno + 1
		for name, tree in TREES.items()
		for node in ast.walk(tree)
		if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
		and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
	}
	assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_no_import_circle():
	graph = {name: _imported(name, tree) for name, tree in TREES.items()}
	circles = _cycles(graph)
	assert not circles, f"import circles among the app's modules: {circles}"


def test_the_import_graph_sees_submodules_imported_from_their_package():
	"""`from erpnext_streaming.delivery import bundles` is an edge to delivery.bundles."""
	tree = ast.parse("from erpnext_streaming.delivery import bundles\nimport erpnext_streaming.constants\n")
	assert _imported("erpnext_streaming.outbox.write", tree) >= {
		"erpnext_streaming.delivery",
		"erpnext_streaming.delivery.bundles",
		"erpnext_streaming.constants",
	}
	assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
