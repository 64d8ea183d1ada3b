"""Module names say what the module holds: no two unrelated ``windows`` modules, and the band kernels' shared
block layout names every kernel that uses it."""

from __future__ import annotations

import re

from helpers import REPO

SRC = REPO / "src" / "longify"


def test_no_module_is_named_windows() -> None:
    """The attention band's block layout is ``attention.band_blocks``; the document windows a QA model was
    trained with are ``qa.trained_windows``: no module is a bare ``windows`` that could mean either."""
    assert sorted(p.relative_to(SRC).as_posix() for p in SRC.rglob("windows.py")) == []
    from longify.attention import band_blocks
    from longify.qa.trained_windows import trained_windows

    assert band_blocks.__name__ == "longify.attention.band_blocks"
    assert trained_windows.__module__ == "longify.qa.trained_windows"


def test_band_blocks_names_every_kernel_that_uses_it() -> None:
    from longify.attention import band_blocks

    users = {
        p.stem
        for p in (SRC / "attention").glob("*.py")
        if "from longify.attention.band_blocks import" in p.read_text(encoding="utf-8")
    }
    summary = (band_blocks.__doc__ or "").split("\n\n")[0]
    assert users == set(re.findall(r"``(\w+)``", summary)), summary
    assert f"the {('one', 'two', 'three', 'four', 'five')[len(users) - 1]} band kernels" in summary
