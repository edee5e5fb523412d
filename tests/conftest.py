"""Shared test helpers."""

from __future__ import annotations

import shutil

import pytest


def require_binary(name: str) -> str:
    """Path of a real interop peer / tool. Fails (never skips) when it is missing: CI must
    install every reference peer, and a silent skip would hide that."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; run scripts/setup --test", pytrace=False)
    return path
