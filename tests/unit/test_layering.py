"""The import contract: the house's floors, read from the real import graph (grimp), so a
change that breaks the layering fails here instead of in a reviewer's head."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import grimp
import pytest

from tests.support.processes import ROOT

PACKAGES = ("gateway", "fallback_engine", "policies")
# Web frameworks and ASGI servers: the HTTP layer's business (the mock servers and the
# simulator are HTTP servers of their own; `spillover serve` starts uvicorn).
WEB = ("starlette", "fastapi", "uvicorn")
WEB_ALLOWED = ("gateway.http", "gateway.cli", "gateway.mock", "fallback_engine.sim")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    # Imports under TYPE_CHECKING count: a cycle drawn only for the type checker is still a
    # cycle a reader has to hold in mind.
    return grimp.build_graph(
        *PACKAGES, include_external_packages=True, exclude_type_checking_imports=False
    )


def test_policies_import_nothing_of_the_gateway_or_the_pool(graph: grimp.ImportGraph) -> None:
    for other in ("gateway", "fallback_engine"):
        assert not graph.chain_exists(importer="policies", imported=other, as_packages=True), (
            graph.find_shortest_chain(importer="policies", imported=other)
        )


def test_the_pool_does_not_import_the_gateway(graph: grimp.ImportGraph) -> None:
    assert not graph.chain_exists(importer="fallback_engine", imported="gateway", as_packages=True)


def test_no_import_cycle_between_modules(graph: grimp.ImportGraph) -> None:
    ours = {m for m in graph.modules if m.split(".")[0] in PACKAGES}
    edges = {m: set(graph.find_modules_directly_imported_by(m)) & ours for m in ours}
    assert _cycles(edges) == []


def test_no_import_cycle_between_the_gateways_folders(graph: grimp.ImportGraph) -> None:
    """Folders (and top-level modules) of gateway/ form floors: no two import each other."""

    def floor(module: str) -> str:
        return ".".join(module.split(".")[:2])

    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        if not module.startswith("gateway."):
            continue
        for imported in graph.find_modules_directly_imported_by(module):
            if imported.startswith("gateway.") and floor(imported) != floor(module):
                edges.setdefault(floor(module), set()).add(floor(imported))
    assert _cycles(edges) == []


# The pipeline's front door (the Pipeline, the ports it takes) and the request's record: all
# the HTTP layer may know of the pipeline, so a transport never reaches into a stage.
PIPELINE_DOOR = ("gateway.pipeline.front", "gateway.pipeline.ports", "gateway.pipeline.context")


def test_the_http_layer_enters_the_pipeline_by_its_front_door(graph: grimp.ImportGraph) -> None:
    reached = {
        (importer, imported)
        for importer in graph.modules
        if importer.startswith("gateway.http")
        for imported in graph.find_modules_directly_imported_by(importer)
        if imported.startswith("gateway.pipeline.") and imported not in PIPELINE_DOOR
    }
    assert reached == set()


def test_only_the_http_layer_knows_asgi_and_web_frameworks(graph: grimp.ImportGraph) -> None:
    offenders = {
        (importer, framework)
        for framework in WEB
        for importer in graph.find_modules_that_directly_import(framework)
        if not importer.startswith(WEB_ALLOWED)
    }
    assert offenders == set()


def test_asgi_types_are_declared_nowhere_but_starlette() -> None:
    redeclared = [
        f"{path.relative_to(ROOT)}:{n}"
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.match(r"(Scope|Receive|Send|Message)\s*=", line)
    ]
    assert redeclared == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def test_tests_share_helpers_only_through_tests_support() -> None:
    imports = [
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for path in (ROOT / "tests").rglob("*.py")
        for line in path.read_text().splitlines()
        if re.match(r"\s*(from|import) tests\.", line)
        and not re.match(r"\s*(from|import) tests\.support(\.|\s)", line)
    ]
    assert imports == []
