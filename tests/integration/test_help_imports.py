"""``longify --help`` imports no command module, no torch and no transformers (a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys


def test_help_imports_no_command_module() -> None:
    code = (
        "import sys\nfrom longify.cli import main\nassert main(['--help']) == 0\n"
        "print(sorted(m for m in sys.modules if m in ('torch', 'transformers') or m.endswith('.commands')))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.splitlines()[-1] == "[]", run.stderr
