"""``kumonet lab ...`` (the multi-host lab). Being built."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("lab", help="the multi-host lab on this machine")
    parser.set_defaults(func=lambda _args: 2)
