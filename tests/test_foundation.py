"""Packaging and import hygiene: the runtime never imports torch, the CLI answers, the layout installs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_and_cli_help_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import streamdet, streamdet.cli\n"
        "from streamdet.cli import app\n"
        "from typer.testing import CliRunner\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "for cmd in [c.name for c in app.registered_commands]:\n"
        "    r = CliRunner().invoke(app, [cmd, '--help'])\n"
        "    assert r.exit_code == 0, (cmd, r.output)\n"
        "print('torch' in sys.modules)\n"
    )
    result = _run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_version_flag_matches_package() -> None:
    import streamdet

    result = subprocess.run(
        [sys.executable, "-m", "streamdet", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"streamdet {streamdet.__version__}"


def test_torch_side_is_importable_under_the_package() -> None:
    code = (
        "import streamdet.models, streamdet.export, streamdet.train\n"
        "print(streamdet.models.__file__)\n"
    )
    result = _run_python(code)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).parent.name == "models"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- test-command -->\s*```(?:bash|sh)?\n(.+?)\n```", readme, re.S)
    assert match, "README must mark its test command with <!-- test-command -->"
    command = match.group(1).strip().splitlines()[-1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert command in ci.splitlines() or f"    {command}" in ci, f"{command!r} not in .ci/run"


def _packages_in_wheel(wheel: Path) -> set[str]:
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        return {n for n in zf.namelist() if n.endswith(".py")}


@pytest.mark.slow
def test_regular_wheel_contains_every_module(tmp_path: Path) -> None:
    """A regular (non-editable) build maps models/, train/, export/ into streamdet.* with every module."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    wheel = next(tmp_path.glob("streamdet-*.whl"))
    names = _packages_in_wheel(wheel)
    expected = set()
    for src, dst in (("streamdet", "streamdet"), ("models", "streamdet/models"), ("train", "streamdet/train"),
                     ("export", "streamdet/export")):
        for py in (ROOT / src).rglob("*.py"):
            expected.add(f"{dst}/{py.relative_to(ROOT / src).as_posix()}")
    assert expected - names == set(), f"missing from the wheel: {sorted(expected - names)}"
    import zipfile

    with zipfile.ZipFile(wheel) as zf:  # package data: the page of `streamdet serve`
        assert "streamdet/serve/static/index.html" in zf.namelist()
    # and it installs and imports on its own
    target = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); sys.path = [p for p in sys.path if p != '']\n"
        "import streamdet, streamdet.models, streamdet.export, streamdet.train\n"
        "assert streamdet.__file__.startswith(sys.argv[1]), streamdet.__file__\n"
        "assert streamdet.models.__file__.startswith(sys.argv[1]), streamdet.models.__file__\n"
        "from streamdet.labels import audioset_labels; assert len(audioset_labels()) == 527\n"
        "from streamdet.session import BUNDLED_DIR, BUNDLED_MODEL\n"
        "assert str(BUNDLED_MODEL).startswith(sys.argv[1]) and BUNDLED_MODEL.stat().st_size > 1e6\n"
        "assert (BUNDLED_DIR / 'example.wav').exists() and (BUNDLED_DIR / 'example.tsv').exists()\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
