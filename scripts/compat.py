#!/usr/bin/env python3
"""The transformers compatibility matrix behind ``make test-compat``.

Runs the unit tier (``pytest -q -m unit``, what ``make test-fast`` runs) against several transformers releases,
each in its own venv ``.venv-compat/transformers-X.Y.Z``:

- the versions: by default the oldest release that pyproject.toml's ``transformers`` requirement accepts (its
  floor) and the newest one it accepts on the package index at run time; ``COMPAT_VERSIONS="5.0.0 5.25.0"``
  (environment or make variable) names them instead; ``COMPAT_PYTEST_ARGS`` adds arguments to pytest's;
- each venv: ``torch==2.13.0`` first (the CPU wheel on disk), then ``requirements.lock`` with its transformers
  line replaced by the version under test, then ``pip install --no-deps -e .``. A lock pin that this
  transformers release does not accept (its ``Requires-Dist``: e.g. huggingface-hub, tokenizers) is *floated*:
  listed without a version, so pip picks one that fits, while every other pin of the lock is kept. If pip
  still finds a conflict, the pinned packages its message names are floated too (a few rounds at most). What
  was floated and what pip chose is printed and kept in the venv's ``compat-resolution.txt``;
- a venv whose stamp (``.compat-installed``: the version, the hashes of requirements.lock and pyproject.toml)
  matches is reused as it is; otherwise it is brought up to date in place.

Prints one line per version (passed / failed / skipped, seconds) and exits 1 if any version failed to install
or had a failing test. Standard library only (``packaging`` if present, else pip's vendored copy).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version
except ImportError:  # pragma: no cover - an interpreter without packaging: pip carries a copy
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.specifiers import SpecifierSet
    from pip._vendor.packaging.utils import canonicalize_name
    from pip._vendor.packaging.version import InvalidVersion, Version

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "requirements.lock"
PYPROJECT = REPO / "pyproject.toml"
ROOT = REPO / ".venv-compat"
TORCH = "torch==2.13.0"
PACKAGE = "transformers"
STAMP = ".compat-installed"
NOISE = re.compile(r"Location '.*' is ignored|^\s*$")


def log(msg: str) -> None:
    print(f"test-compat: {msg}", flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, text=True, **kw)


def pip_quiet(py: Path, *args: str) -> subprocess.CompletedProcess:
    """pip with its output captured; pip's notes about this machine's local index folders are dropped."""
    p = run([str(py), "-m", "pip", *args], capture_output=True)
    p.stderr = "\n".join(line for line in p.stderr.splitlines() if not NOISE.search(line))
    return p


def declared_spec() -> SpecifierSet:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    for d in deps:
        req = Requirement(d)
        if canonicalize_name(req.name) == PACKAGE:
            return req.specifier
    sys.exit(f"test-compat: no {PACKAGE} requirement in {PYPROJECT.name}")


def index_versions() -> list[Version]:
    """Every final release of transformers on the index (``pip index versions``), oldest first."""
    p = pip_quiet(Path(sys.executable), "index", "versions", PACKAGE)
    m = re.search(r"Available versions:\s*(.+)", p.stdout)
    if p.returncode or not m:
        return []
    out = []
    for v in m.group(1).split(","):
        try:
            out.append(Version(v.strip()))
        except InvalidVersion:
            continue
    return sorted(x for x in out if not x.is_prerelease and not x.is_devrelease)


def default_versions() -> list[str]:
    spec = declared_spec()
    accepted = [v for v in index_versions() if v in spec]
    if accepted:
        oldest, newest = accepted[0], accepted[-1]
    else:  # no listing (old pip, index down): the floor as written, the newest that pip would install
        floors = [Version(s.version) for s in spec if s.operator in (">=", "==", "~=")]
        if not floors:
            sys.exit(f"test-compat: {PACKAGE}{spec} has no floor and the index gave no versions")
        oldest = floors[0]
        try:
            newest = Version(pip_would_install(Path(sys.executable), f"{PACKAGE}{spec}")["version"])
        except RuntimeError as err:
            sys.exit(f"test-compat: cannot find the newest {PACKAGE}{spec}: {err}")
    log(f"{PACKAGE}{spec} in pyproject.toml: oldest release {oldest}, newest on the index {newest}")
    return [str(oldest)] if oldest == newest else [str(oldest), str(newest)]


def lock_lines() -> list[tuple[str, str]]:
    """(canonical name, line) for each pinned line of requirements.lock."""
    out = []
    for raw in LOCK.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            out.append((canonicalize_name(Requirement(line).name), line))
    return out


def pinned_version(line: str) -> Version | None:
    for s in Requirement(line).specifier:
        if s.operator == "==":
            return Version(s.version)
    return None


def pip_would_install(py: Path, requirement: str) -> dict:
    """The metadata of the release pip would install for ``requirement`` (a dry run, no dependencies)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        p = pip_quiet(
            py,
            "install",
            "--dry-run",
            "--no-deps",
            "--ignore-installed",
            "--report",
            str(report),
            requirement,
        )
        if p.returncode:
            raise RuntimeError(f"{requirement} is not installable here:\n{p.stderr}")
        return json.loads(report.read_text())["install"][0]["metadata"]


def requires_dist(py: Path, version: str) -> list[Requirement]:
    """transformers==VERSION's own requirements (no extras; markers evaluated for this interpreter)."""
    meta = pip_would_install(py, f"{PACKAGE}=={version}")
    reqs = [Requirement(r) for r in meta.get("requires_dist") or []]
    return [r for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]


CONFLICT_USER = re.compile(r"^\s*The user requested (\S+?)==")
CONFLICT_DEP = re.compile(r"^\s*(\S+) (\S+) depends on ")


def install(venv: Path, version: str) -> list[str]:
    """Create or update VENV with torch, the lock (transformers==VERSION, pins floated where needed), longify.
    Returns the lines that say what was floated or added."""
    py = venv / "bin" / "python"
    if not py.exists():
        run([sys.executable, "-m", "venv", str(venv)], check=True)
    for args in (("install", "-q", "--upgrade", "pip"), ("install", "-q", TORCH)):
        p = pip_quiet(py, *args)
        if p.returncode:
            raise RuntimeError(f"pip {' '.join(args)} failed:\n{p.stderr}")

    lock = lock_lines()
    locked = dict(lock)
    floated: dict[str, str] = {}  # name -> why
    for req in requires_dist(py, version):
        name = canonicalize_name(req.name)
        pin = pinned_version(locked[name]) if name in locked else None
        if name != PACKAGE and pin is not None and pin not in req.specifier:
            floated[name] = f"{PACKAGE} {version} requires {req.name}{req.specifier}"

    for _round in range(6):
        lines = []
        for name, line in lock:
            if name == PACKAGE:
                lines.append(f"{PACKAGE}=={version}")
            elif name in floated:
                lines.append(Requirement(line).name)
            else:
                lines.append(line)
        reqfile = venv / "compat-requirements.txt"
        reqfile.write_text("\n".join(lines) + "\n")
        # not -q: pip says which requirements conflict ("The conflict is caused by:") only at normal verbosity
        p = pip_quiet(py, "install", "-r", str(reqfile))
        if p.returncode == 0:
            break
        said = (p.stdout + "\n" + p.stderr).splitlines()
        if not any("ResolutionImpossible" in ln or "conflicting dependencies" in ln for ln in said):
            raise RuntimeError(f"pip install -r {reqfile.name} failed:\n{p.stderr}")
        named = {canonicalize_name(m.group(1)) for ln in said if (m := CONFLICT_USER.match(ln))}
        if not named - floated.keys():  # nothing pinned that pip named: the packages that depend on it
            named = {canonicalize_name(m.group(1)) for ln in said if (m := CONFLICT_DEP.match(ln))}
        new = {n for n in named if n in locked and n not in floated and n not in (PACKAGE, "torch")}
        if not new:
            cause = [ln for ln in said if ln.startswith(("ERROR", "    "))]
            raise RuntimeError("unresolvable with the lock's other pins:\n" + "\n".join(cause[-12:]))
        for n in sorted(new):
            floated[n] = "named in a pip conflict"
    else:
        raise RuntimeError("no resolution after 6 rounds of floating pins")

    p = pip_quiet(py, "install", "-q", "--no-deps", "-e", str(REPO))
    if p.returncode:
        raise RuntimeError(f"pip install --no-deps -e . failed:\n{p.stderr}")

    installed = {}
    freeze = pip_quiet(py, "list", "--format=json", "--exclude-editable")
    for item in json.loads(freeze.stdout):
        installed[canonicalize_name(item["name"])] = item["version"]
    notes = []
    for name, why in sorted(floated.items()):
        notes.append(f"floated {name} {pinned_version(locked[name])} -> {installed.get(name, '?')} ({why})")
    for name in sorted(set(installed) - set(locked) - {"pip", "setuptools", "longify"}):
        notes.append(f"added {name} {installed[name]} (not in the lock)")
    for name in sorted(set(locked) - set(floated) - {PACKAGE}):
        want = pinned_version(locked[name])
        if name in installed and want is not None and Version(installed[name]).public != want.public:
            notes.append(f"changed {name} {want} -> {installed[name]} (pip moved a pin)")
    (venv / "compat-resolution.txt").write_text("".join(n + "\n" for n in notes))
    return notes


def stamp_text(version: str) -> str:
    sums = "".join(
        f"{f.name} sha256 {hashlib.sha256(f.read_bytes()).hexdigest()}\n" for f in (LOCK, PYPROJECT)
    )
    return f"{PACKAGE}=={version}\n{sums}"


def ensure_venv(version: str) -> Path:
    venv = ROOT / f"{PACKAGE}-{version}"
    stamp = venv / STAMP
    if stamp.exists() and stamp.read_text() == stamp_text(version):
        log(f"{PACKAGE} {version}: reusing {venv.relative_to(REPO)}")
        return venv
    stamp.unlink(missing_ok=True)
    log(f"{PACKAGE} {version}: installing {venv.relative_to(REPO)} ({TORCH} first, then the lock)")
    t0 = time.monotonic()
    for note in install(venv, version):
        log(f"{PACKAGE} {version}: {note}")
    stamp.write_text(stamp_text(version))
    log(f"{PACKAGE} {version}: installed in {time.monotonic() - t0:.0f} s")
    return venv


COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)")


def run_unit_tier(venv: Path, version: str, extra: str) -> dict:
    py = venv / "bin" / "python"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    got = run(
        [str(py), "-c", f"import {PACKAGE}; print({PACKAGE}.__version__)"], capture_output=True, env=env
    )
    if got.returncode or got.stdout.strip() != version:
        return {"error": f"the venv has {PACKAGE} {got.stdout.strip() or '?'}: {got.stderr.strip()[-300:]}"}
    log(f"{PACKAGE} {version}: pytest -q -m unit {extra}".rstrip())
    t0 = time.monotonic()
    # no cache provider: the shared tree's .pytest_cache (make test's last-failed list) is left alone
    p = subprocess.Popen(
        [str(py), "-m", "pytest", "-q", "-m", "unit", "-p", "no:cacheprovider", *shlex.split(extra)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    last = ""
    with open(venv / "pytest-unit.log", "w") as out:
        for line in p.stdout:
            sys.stdout.write(line)
            out.write(line)
            if line.strip():
                last = line
    rc = p.wait()
    counts = {k: 0 for k in ("passed", "failed", "skipped", "errors")}
    for n, kind in COUNT.findall(last):
        key = "errors" if kind.startswith("error") else kind
        if key in counts:
            counts[key] = int(n)
    return {"rc": rc, "seconds": time.monotonic() - t0, **counts}


def main() -> int:
    override = os.environ.get("COMPAT_VERSIONS", "").split()
    versions = override or default_versions()
    for v in versions:
        Version(v)  # a typo fails here, before any install
    ROOT.mkdir(exist_ok=True)
    results = {}
    for v in versions:
        try:
            venv = ensure_venv(v)
            results[v] = run_unit_tier(venv, v, os.environ.get("COMPAT_PYTEST_ARGS", ""))
        except (RuntimeError, subprocess.CalledProcessError) as e:
            results[v] = {"error": str(e)}
            log(f"{PACKAGE} {v}: {e}")
    print()
    bad = False
    for v, r in results.items():
        if "error" in r:
            bad = True
            first = r["error"].splitlines()[0]
            print(f"test-compat: {PACKAGE} {v:<8} not tested: {first}")
            continue
        ok = r["rc"] == 0 and r["failed"] == 0 and r["errors"] == 0
        bad |= not ok
        errors = f", {r['errors']} error{'s' if r['errors'] > 1 else ''}" if r["errors"] else ""
        print(
            f"test-compat: {PACKAGE} {v:<8} {'ok  ' if ok else 'FAIL'} unit tier: {r['passed']} passed, "
            f"{r['failed']} failed, {r['skipped']} skipped{errors} in {r['seconds']:.0f} s"
            + ("" if ok else f" (pytest exit {r['rc']}; log .venv-compat/{PACKAGE}-{v}/pytest-unit.log)")
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
