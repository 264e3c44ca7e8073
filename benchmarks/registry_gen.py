"""Synthetic block registries for the resolution benchmark.

``generate(root, blocks=10_000)`` writes ``root/blocks.toml`` and one (empty) directory per
block version. Shape:

- ``depth`` layers (default 20); layer 0 requires nothing, a block in layer L requires
  ``fan_in`` (default 3) blocks: the block below it in layer L-1, its right neighbour there, and
  one block in a lower layer near the same position. A deep block's closure is therefore a cone
  of a few hundred blocks, whatever the registry size (as in a real monorepo, where a service
  needs its own platform stack, not every block).
- ``versions`` per block (default 10): 1.0.0 … 1.9.0, requiring ``~> 1.0``, ``~> 1.M`` or
  ``>= 1.M, < 2.0`` (M ≤ 3, so every requirement is satisfiable).
- conflicts (``conflict_every``, default every 7th block of a layer): every version of the
  block requires its first dependency ``>= 1.0, < 1.5`` while the newest version of its left
  neighbour requires that same dependency ``>= 1.5, < 2.0``. The neighbour's newest version can
  never be chosen when both are needed: the resolver must give it up for the previous one
  (infrablocks' provider sees it ahead and rejects the candidate; plain resolvelib pins it
  first, being of the same height and a smaller name, and has to backjump).

``generate_wide(root, blocks=10_000)`` writes the other shape, where a deep block's closure is
most of the registry (issue 14: what an organisation resolving its whole production environment
at once meets):

- ``depth`` layers (default 20); a block in layer L ≥ 1 requires ``fan_in`` (default 3)
  distinct random blocks of layer L-1. From the top layer down the closure fans out until it
  covers nearly every block of the lower layers (~8,700 of 10,000 blocks).
- ``versions`` per block (default 5): 1.0.0 … 1.4.0, requiring ``>= 1.M, < 2.0``, ``~> 1.M``
  or ``>= 1.M`` (M ≤ 1): every newest version satisfies every requirement, so there is no
  conflict to search for.
- ``restrictive`` (default 0): the probability that a requirement excludes some newest versions
  instead (``< 1.K``, ``~> 1.K.0`` or ``!= 1.K.0``). Small registries with it have real conflicts
  now and then: the resolver's property tests use it.

Run as a script to write a registry: ``python benchmarks/registry_gen.py DIR --blocks 1000``
(``--shape wide`` for the second shape).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

__all__ = ["deep_target", "generate", "generate_wide"]


def block_name(layer: int, index: int) -> str:
    return f"b{layer:02d}_{index:05d}"


def _layout(blocks: int, depth: int) -> list[int]:
    """How many blocks each layer holds (the remainder goes to the lower layers)."""
    base, extra = divmod(blocks, depth)
    return [base + (1 if layer < extra else 0) for layer in range(depth)]


def deep_target(blocks: int, depth: int = 20) -> str:
    """A block in the top layer, in the middle: the deepest closure."""
    widths = _layout(blocks, depth)
    return block_name(depth - 1, widths[-1] // 2)


def generate(root: Path, blocks: int = 10_000, versions: int = 10, depth: int = 20,
             fan_in: int = 3, conflict_every: int = 7, seed: int = 1) -> Path:
    """Write a registry of ``blocks`` blocks under ``root``; returns the blocks.toml path."""
    rng = random.Random(seed)
    widths = _layout(blocks, depth)
    root.mkdir(parents=True, exist_ok=True)
    lines = ["[defaults]", 'environment = "bench"', "", "[environments.bench]", ""]
    version_names = [f"1.{k}.0" for k in range(versions)]
    for layer, width in enumerate(widths):
        for index in range(width):
            name = block_name(layer, index)
            deps = _dependencies(layer, index, widths, fan_in, rng)
            conflicting = bool(deps) and index % conflict_every == 1
            neighbour_of_conflict = bool(deps) and index % conflict_every == 0 \
                and index + 1 < width
            lines.append(f"[blocks.{name}]")
            lines.append(f'description = "synthetic block {layer}/{index}"')
            lines.append(f"[blocks.{name}.versions]")
            for k, version in enumerate(version_names):
                requires = {}
                for dep in deps:
                    minor = rng.randint(0, 3)
                    requires[dep] = rng.choice(
                        ["~> 1.0", f"~> 1.{minor}", f">= 1.{minor}, < 2.0"])
                if conflicting:
                    requires[deps[0]] = ">= 1.0, < 1.5"
                if neighbour_of_conflict and k == versions - 1:
                    # our second dependency is the right neighbour's first
                    right_first = block_name(layer - 1, (index + 1) % widths[layer - 1])
                    if right_first in requires:
                        requires[right_first] = ">= 1.5, < 2.0"
                body = ", ".join(f'{dep} = "{c}"' for dep, c in requires.items())
                lines.append(f'"{version}" = {{ requires = {{ {body} }} }}' if body
                             else f'"{version}" = {{}}')
                (root / "blocks" / name / version).mkdir(parents=True, exist_ok=True)
            lines.append("")
    path = root / "blocks.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def generate_wide(root: Path, blocks: int = 10_000, versions: int = 5, depth: int = 20,
                  fan_in: int = 3, seed: int = 1, restrictive: float = 0.0) -> Path:
    """Write a registry of ``blocks`` blocks whose deep closures cover most of it (see the module
    docstring); returns the blocks.toml path. ``deep_target(blocks, depth)`` names a top block."""
    rng = random.Random(seed)
    widths = _layout(blocks, depth)
    root.mkdir(parents=True, exist_ok=True)
    lines = ["[defaults]", 'environment = "bench"', "", "[environments.bench]", ""]
    version_names = [f"1.{k}.0" for k in range(versions)]
    for layer, width in enumerate(widths):
        below = widths[layer - 1] if layer else 0
        for index in range(width):
            name = block_name(layer, index)
            lines.append(f"[blocks.{name}]")
            lines.append(f"[blocks.{name}.versions]")
            deps = [block_name(layer - 1, i)
                    for i in rng.sample(range(below), min(fan_in, below))] if layer else []
            for version in version_names:
                requires = {dep: _wide_constraint(rng, versions, restrictive) for dep in deps}
                body = ", ".join(f'{dep} = "{c}"' for dep, c in requires.items())
                lines.append(f'"{version}" = {{ requires = {{ {body} }} }}' if body
                             else f'"{version}" = {{}}')
                (root / "blocks" / name / version).mkdir(parents=True, exist_ok=True)
            lines.append("")
    path = root / "blocks.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _wide_constraint(rng: random.Random, versions: int, restrictive: float) -> str:
    if restrictive and rng.random() < restrictive:
        k = rng.randint(1, versions - 1)
        return rng.choice([f"< 1.{k}", f"~> 1.{k}.0", f"!= 1.{versions - 1}.0"])
    minor = rng.randint(0, 1)
    return rng.choice([f">= 1.{minor}, < 2.0", f"~> 1.{minor}", f">= 1.{minor}"])


def _dependencies(layer: int, index: int, widths: list[int], fan_in: int,
                  rng: random.Random) -> list[str]:
    if layer == 0:
        return []
    below = widths[layer - 1]
    deps = [block_name(layer - 1, index % below), block_name(layer - 1, (index + 1) % below)]
    while len(deps) < fan_in:
        lower = rng.randint(0, layer - 1)
        candidate = block_name(lower, (index + rng.randint(-2, 2)) % widths[lower])
        if candidate not in deps:
            deps.append(candidate)
    return deps[:fan_in]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--blocks", type=int, default=1000)
    parser.add_argument("--versions", type=int, help="versions per block (cone: 10, wide: 5)")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--fan-in", type=int, default=3)
    parser.add_argument("--shape", choices=["cone", "wide"], default="cone",
                        help="cone: closures of a few hundred blocks, with conflicts (default); "
                             "wide: closures of most of the registry, no conflict")
    args = parser.parse_args()
    if args.shape == "wide":
        path = generate_wide(args.directory, args.blocks, args.versions or 5, args.depth,
                             args.fan_in)
    else:
        path = generate(args.directory, args.blocks, args.versions or 10, args.depth,
                        args.fan_in)
    print(f"wrote {path}; deep target: {deep_target(args.blocks, args.depth)}")


if __name__ == "__main__":
    main()
