"""The README's Python snippets run as written, so the first thing a user copies works."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, re.S)


def test_stack_snippet_prints_what_it_sent() -> None:
    result = subprocess.run([sys.executable, "-c", SNIPPETS[0]], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "b'hello'"


@pytest.mark.anyio
async def test_devnet_snippet_gets_the_reply(capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, Any] = {}
    exec("async def snippet():\n" + textwrap.indent(SNIPPETS[1], "    "), namespace)
    await namespace["snippet"]()
    assert capsys.readouterr().out.strip() == "b'hello, whoever you are'"
