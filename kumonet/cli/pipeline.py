"""``kumonet pipeline``: the br-int OpenFlow pipeline, from its declaration."""

from __future__ import annotations

import argparse

from kumonet.dataplane.pipeline import describe_pipeline


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "pipeline",
        help="show the OpenFlow pipeline kumonet programs on br-int",
        description="Print the br-int pipeline (tables, numbers, matches, next tables, "
        "miss actions, registers) as Markdown, generated from its declaration.",
    )
    parser.set_defaults(func=_show)


def _show(_args: argparse.Namespace) -> int:
    print(describe_pipeline())
    return 0
