"""tools/mutations.py must keep matching the source it mutates (run the script itself for the caught table)."""
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_tool():
    spec = importlib.util.spec_from_file_location("farnet_mutations", REPO / "tools" / "mutations.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module        # dataclasses look the module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_every_mutation_pattern_occurs_once_in_the_current_source():
    tool = load_tool()
    assert tool.check_patterns() == []
    names = [m.name for m in tool.MUTATIONS]
    assert len(set(names)) == len(names)
    for m in tool.MUTATIONS:
        assert (REPO / m.path).is_file() and m.original != m.mutated
    for test_file in tool.TESTS:
        assert (REPO / test_file).is_file(), test_file


def test_applying_a_mutation_patches_only_the_copy(tmp_path):
    tool = load_tool()
    mutation = tool.MUTATIONS[0]
    before = (REPO / mutation.path).read_text(encoding="utf-8")
    copy = tmp_path / mutation.path
    copy.parent.mkdir(parents=True)
    copy.write_text(before, encoding="utf-8")
    tool.apply(mutation, tmp_path)
    assert mutation.mutated in copy.read_text(encoding="utf-8")
    assert (REPO / mutation.path).read_text(encoding="utf-8") == before
