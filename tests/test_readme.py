"""The README's Python example runs as written (so it cannot drift from the API)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_example_trains_and_reports_every_modality(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert len(code.strip().splitlines()) <= 12
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the run folder goes to ./runs
    try:
        exec(compile(code, str(README), "exec"), {})
    finally:
        os.chdir(cwd)
    accs = [float(v) for v in capsys.readouterr().out.split()]
    assert len(accs) == 3 and all(0.0 <= a <= 1.0 for a in accs)
    assert accs[0] > 0.5  # 4 classes: chance is 0.25
    assert list((tmp_path / "runs").iterdir())
