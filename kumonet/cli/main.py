"""The ``kumonet`` command: one argparse tree, each subcommand group in its
own module, wired here explicitly."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

# Each group module exposes ``register(subparsers) -> None``; the parser it
# adds sets ``func`` to a callable taking the parsed namespace and returning
# an exit code.
Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _registrars() -> list[Registrar]:
    from kumonet.cli import cluster, lab, pipeline

    return [lab.register, cluster.register, pipeline.register]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kumonet", description="kumonet operator commands")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in _registrars():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
