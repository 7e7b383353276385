"""The harness tests and benchmarks share is testkit/: tests/ and bench/ never import each other (read from
the source with ast, so an import inside a function counts too). tests/bench/ and tests/chaos/ are the tests
of the benchmark tools themselves and import what they test."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS_OF_BENCH = (ROOT / "tests" / "bench", ROOT / "tests" / "chaos")


def imported_packages(path: Path) -> set[str]:
    """Top-level package names of every import in the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def offenders(directory: str, forbidden: str, allowed: tuple[Path, ...] = ()) -> list[str]:
    return sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / directory).rglob("*.py")
        if not any(path.is_relative_to(a) for a in allowed) and forbidden in imported_packages(path)
    )


def test_tests_do_not_import_bench():
    assert offenders("tests", "bench", allowed=TESTS_OF_BENCH) == [], "share it through testkit/ instead"


def test_bench_does_not_import_tests():
    assert offenders("bench", "tests") == [], "share it through testkit/ instead"


def test_testkit_imports_neither():
    assert offenders("testkit", "tests") == offenders("testkit", "bench") == []


@pytest.mark.parametrize(
    "source", ["import bench.faults\n", "from bench import chaos\n", "def f():\n    import bench\n"]
)
def test_the_scan_sees_every_form_of_import(tmp_path, source):
    module = tmp_path / "m.py"
    module.write_text(source)
    assert "bench" in imported_packages(module)
