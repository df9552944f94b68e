"""moola/ is the library: it never imports pytest or the gates (STYLE rule 2)."""

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "moola"


def imported_modules(path: Path) -> set:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_library_imports_no_pytest_and_no_gates():
    files = sorted(LIBRARY.rglob("*.py"))
    assert len(files) > 10
    offenders = {str(f.relative_to(LIBRARY)): sorted(imported_modules(f) & {"pytest", "_pytest", "gates", "conftest"})
                 for f in files}
    assert {f: m for f, m in offenders.items() if m} == {}


def test_parallel_runs_fits_without_knowing_the_stages():
    # moola.parallel sits below moola.stages (docs/layout.md): a run is any object with for_fit and device
    for path in sorted((LIBRARY / "parallel").rglob("*.py")):
        source = path.read_text()
        assert "moola.stages" not in source and "from moola import stages" not in source, path.name
