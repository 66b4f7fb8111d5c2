"""Mutation check: apply each known-dangerous one-line bug to a copy of the kit and show that the tests catch it.

Run it from anywhere with the project's interpreter::

    .venv/bin/python tools/mutations.py            # every mutation; exit 1 if any survives
    .venv/bin/python tools/mutations.py --list     # the mutations and the files they patch
    .venv/bin/python tools/mutations.py --only plus-half-pixel fusion-concat-swapped

For every mutation it copies ``farnet_lite/``, ``tests/`` and ``pyproject.toml`` to a fresh temporary folder,
replaces one exact piece of source text there (the working tree is never touched), and runs the value tests
(:data:`TESTS`) in that folder with ``PYTHONPATH`` pointing at the copy, so ``import farnet_lite`` imports the
mutant. First the unmutated copy must pass, or the table would mean nothing. A mutation is *caught* when the tests
fail (pytest exit status 1) and *survived* when they pass; any other exit (an import error, a crash) is reported
as an error, because a mutant that does not even import proves nothing about the tests. The exit status is 0 only
if every mutation is caught. ``tests/test_mutations.py`` checks that every pattern below still occurs exactly once
in the current source, so this list cannot silently rot when the code changes.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
COPIED = ("farnet_lite", "tests", "pyproject.toml")
TESTS = ("tests/test_codec.py", "tests/test_oracle.py", "tests/test_model_values.py", "tests/test_heatmaps.py",
         "tests/test_losses.py")
"""The value tests every mutant runs against (a few seconds each on a CPU)."""
TIMEOUT_S = 600


@dataclass(frozen=True)
class Mutation:
    """Replace ``original`` (which must occur exactly once in ``path``) by ``mutated``."""

    name: str
    path: str          # relative to the repository root
    original: str
    mutated: str
    what: str          # one line for the table


MUTATIONS: Tuple[Mutation, ...] = (
    Mutation("plus-half-pixel", "farnet_lite/engine/evaluate.py",
             "    return codec.decode(output.final.float())",
             "    coords, scores = codec.decode(output.final.float())\n    return coords + 0.5, scores",
             "predict_batch adds +0.5 px after decoding"),
    Mutation("decode-without-grid-change", "farnet_lite/heatmaps.py",
             "        return rescale_points(coords, self.heatmap_size, self.input_size), scores",
             "        return coords, scores",
             "the codec's decode drops the grid change back to the input grid"),
    Mutation("decode-on-the-input-grid", "farnet_lite/heatmaps.py",
             "        return self.grid(tuple(heatmaps.shape[-2:])).decode(heatmaps, self.method)",
             "        return self.grid(self.input_size).decode(heatmaps, self.method)",
             "the run's codec decodes as if every output were at input resolution (MSFA-alone path)"),
    Mutation("decode-ignores-config-origin", "farnet_lite/engine/runtime.py",
             "config.origin, config.decode_origin,",
             "config.origin, 0.0,",
             "the run's codec decodes 0-based whatever origin the targets were drawn with"),
    Mutation("encode-origin-off-by-one", "farnet_lite/heatmaps.py",
             "        return encode_heatmaps(on_grid, self.heatmap_size, self.sigma, self.origin)",
             "        return encode_heatmaps(on_grid, self.heatmap_size, self.sigma, self.origin + 1.0)",
             "the codec's encode draws on a grid whose origin is off by one"),
    Mutation("sigma-ignored-by-the-loss", "farnet_lite/losses.py",
             "        codec = LandmarkCodec(input_size, sigma, origin)",
             "        codec = LandmarkCodec(input_size, origin=origin)",
             "coarse_to_fine_loss ignores its sigma (targets drawn with the default 10)"),
    Mutation("sigma-ignored-by-encode", "farnet_lite/heatmaps.py",
             "    inv = -1.0 / (2.0 * sigma * sigma)",
             "    inv = -1.0 / (2.0 * 10.0 * 10.0)",
             "encode_heatmaps ignores its sigma"),
    Mutation("fr-fed-zeros", "farnet_lite/model.py",
             "            parts.append(upsample_like(heatmaps, c0))",
             "            parts.append(torch.zeros_like(upsample_like(heatmaps, c0)))",
             "FR is fed zeros instead of the MSFA heatmaps"),
    Mutation("fusion-concat-swapped", "farnet_lite/layers.py",
             "torch.cat([x, skip], dim=1)",
             "torch.cat([skip, x], dim=1)",
             "the Fig. 3 fusion block concatenates [skip, x] instead of [x, skip]"),
)


def check_patterns(root: Path = REPO, mutations: Sequence[Mutation] = MUTATIONS) -> List[str]:
    """One sentence per mutation whose ``original`` text does not occur exactly once in its file (empty: all fine)."""
    problems = []
    for m in mutations:
        source = root / m.path
        count = source.read_text(encoding="utf-8").count(m.original) if source.is_file() else 0
        if count != 1 or m.original == m.mutated:
            problems.append(f"mutation {m.name!r}: its text occurs {count} times in {m.path} (must be once); "
                            f"update MUTATIONS in tools/mutations.py to the current source")
    return problems


def copy_kit(destination: Path) -> Path:
    """Copy what the tests need (no caches, no outputs) into ``destination``; return it."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore)
        else:
            shutil.copy2(source, destination / name)
    return destination


def apply(mutation: Mutation, root: Path) -> None:
    """Patch the copy under ``root`` (never the working tree)."""
    path = root / mutation.path
    assert REPO.resolve() not in path.resolve().parents, "refusing to patch the working tree"
    text = path.read_text(encoding="utf-8")
    if text.count(mutation.original) != 1:
        raise SystemExit(check_patterns(root, [mutation])[0])
    path.write_text(text.replace(mutation.original, mutation.mutated), encoding="utf-8")


def run_tests(root: Path, tests: Sequence[str]) -> Tuple[int, str]:
    """Run pytest on ``tests`` inside the copy ``root``; ``(exit status, last summary line)``."""
    env = dict(os.environ, PYTHONPATH=str(root), FARNET_QUICK="1", OMP_NUM_THREADS="1",
               PYTHONDONTWRITEBYTECODE="1")
    probe = subprocess.run([sys.executable, "-c", "import farnet_lite; print(farnet_lite.__file__)"], cwd=root,
                           env=env, capture_output=True, text=True)
    if probe.returncode != 0 or not Path(probe.stdout.strip()).resolve().is_relative_to(root.resolve()):
        return 3, f"the copy is not what imports as farnet_lite: {probe.stdout.strip() or probe.stderr[-300:]}"
    done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                          cwd=root, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    return done.returncode, (failed[0] if failed else (lines[-1] if lines else done.stderr[-300:]))


def verdict(status: int) -> str:
    return {0: "SURVIVED", 1: "caught"}.get(status, f"error (pytest exit {status})")


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutations")
    parser.add_argument("--tests", nargs="+", default=list(TESTS), help="test files to run (default: %(default)s)")
    args = parser.parse_args(list(argv))
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:<28} {m.path:<26} {m.what}")
        return 0
    problems = check_patterns(REPO, chosen)
    if problems:
        print("\n".join(problems))
        return 2
    with tempfile.TemporaryDirectory(prefix="farnet-mutant-") as tmp:
        status, summary = run_tests(copy_kit(Path(tmp) / "clean"), args.tests)
        print(f"{'(no mutation)':<28} {'passes' if status == 0 else 'FAILS'}: {summary}")
        if status != 0:
            print("The unmutated kit must pass these tests first; fix that before reading mutation results.")
            return 2
        survivors = 0
        for number, m in enumerate(chosen):
            root = copy_kit(Path(tmp) / f"mutant{number}")
            apply(m, root)
            status, summary = run_tests(root, args.tests)
            survivors += status != 1
            print(f"{m.name:<28} {verdict(status):<9} {m.what}\n{'':<28} {summary}")
            shutil.rmtree(root)
    print(f"{len(chosen) - survivors} of {len(chosen)} mutations caught")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
