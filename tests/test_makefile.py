"""`make run` on a fresh clone installs the runtime dependencies only; `make test` and
`make lint` install the `test` extra too (read from make's dry run, on a copy of the
Makefile beside pyproject.toml with no venv yet)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.support.store import ROOT


def dry_run(clone: Path, target: str) -> list[str]:
    # Under `make test` the parent make's flags would reach this one (and a sub-make prints
    # "Entering/Leaving directory" lines): run it as a developer would, on its own.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    done = subprocess.run(["make", "--no-print-directory", "-n", target], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def installs(lines: list[str]) -> list[str]:
    return [line for line in lines if "pip install" in line]


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    ferretdb = tmp_path / "tools" / "ferretdb"  # the sources `make test` builds FerretDB from
    ferretdb.mkdir(parents=True)
    for name in ("main.go", "go.mod", "go.sum"):
        (ferretdb / name).touch()
    return tmp_path


@pytest.mark.process
def test_run_installs_no_test_or_lint_tools(clone: Path) -> None:
    lines = dry_run(clone, "run")
    assert installs(lines) == [".venv/bin/python -m pip install -e ."]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["test"]
    runtime = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    tools = {spec.split("==")[0].lower() for spec in extras}
    assert {"pytest", "playwright", "ruff", "mypy"} <= tools
    assert not tools & {spec.split("==")[0].lower() for spec in runtime}
    assert lines[-1] == "exec .venv/bin/python -m fhir_server serve"


@pytest.mark.process
@pytest.mark.parametrize("target", ["test", "lint"])
def test_test_and_lint_install_the_test_extra(clone: Path, target: str) -> None:
    assert installs(dry_run(clone, target)) == [".venv/bin/python -m pip install -e '.[test]'"]
