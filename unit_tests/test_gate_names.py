"""`pytest gates -k <word>` selects exactly one gate for each gate's own word (STYLE rule 1)."""

import ast
from pathlib import Path

import pytest

GATES_DIR = Path(__file__).resolve().parents[1] / "gates"
WORDS = ["verify", "smoke", "minirocket", "pretrain", "finetune", "augment", "simplelstm", "ensemble"]


def gate_tests() -> dict:
    """module file name -> names of its test functions."""
    return {path.name: [node.name for node in ast.parse(path.read_text()).body
                        if isinstance(node, ast.FunctionDef) and node.name.startswith("test")]
            for path in sorted(GATES_DIR.glob("test_*.py"))}


def test_each_gate_module_has_one_gate_test():
    modules = gate_tests()
    assert len(modules) == 8
    assert all(len(tests) == 1 for tests in modules.values()), modules


@pytest.mark.parametrize("word", WORDS)
def test_keyword_selects_exactly_one_gate(word):
    selected = [module for module, tests in gate_tests().items()
                if word in module.lower() or any(word in test.lower() for test in tests)]
    assert len(selected) == 1, f"-k {word} would select {selected}"
