"""Errors the lab raises: one base class so the CLI can print them cleanly."""

from __future__ import annotations


class LabError(Exception):
    """Something in the lab failed; the message says what and how to recover."""


class LabNotFound(LabError):
    """No lab with this prefix is up (no state file in its run directory)."""
