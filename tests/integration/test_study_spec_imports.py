"""Planning a spec of common flags imports no transformers (checked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

from helpers import REPO


def test_a_spec_of_common_flags_plans_without_importing_transformers() -> None:
    code = (
        "import sys\nfrom longify.study.jobs import plan_jobs\nfrom longify.study.spec import load_spec\n"
        f"plan_jobs(load_spec({str(REPO / 'configs' / 'thesis.yaml')!r}, 'out'))\n"
        "print('transformers' in sys.modules, 'torch' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["False", "False"], run.stderr
