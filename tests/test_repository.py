"""Repository-wide checks that CI runs with the suite: lint, format, types, licence hygiene."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["smolmix_core", "smolmix_http"]
SOURCES = [*PACKAGES, "tests", "benchmarks", "examples"]


def _tool(name: str) -> list[str]:
    candidate = Path(sys.executable).with_name(name)
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; it comes with the test extra: pip install -e '.[test]'")
    return [found]


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_lint_passes() -> None:
    result = _run([*_tool("ruff"), "check", *SOURCES])
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = _run([*_tool("ruff"), "format", "--check", *SOURCES])
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_passes_strict_on_core() -> None:
    result = _run([*_tool("mypy"), *PACKAGES])
    assert result.returncode == 0, result.stdout + result.stderr


def test_packages_never_import_scapy() -> None:
    code = (
        "import sys, pkgutil, importlib\n"
        "for pkg in ('smolmix_core', 'smolmix_http'):\n"
        "    mod = importlib.import_module(pkg)\n"
        "    for info in pkgutil.walk_packages(mod.__path__, pkg + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "assert 'scapy' not in sys.modules, 'a package module imported scapy'\n"
    )
    result = _run([sys.executable, "-c", code])
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert len(block) == 2, "README opens with exactly two commands"
    assert "pytest" in block[1]
    assert "smolmix" in block[0]
    assert "sed -n 2p" in (ROOT / ".ci" / "run").read_text()
