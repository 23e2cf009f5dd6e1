"""The install path and the image definition: checked statically (there is no Docker engine)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_dockerfile_is_hadolint_clean():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    res = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_dockerfile_uses_the_one_setup_script():
    text = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim-bookworm" in text
    assert "scripts/setup.sh" in text
    assert 'ENTRYPOINT ["vaar"]' in text


def test_ci_and_make_use_the_same_setup_and_readme_commands():
    ci = (ROOT / ".ci/run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci
    assert "scripts/setup.sh" in makefile
    assert "make demo" in readme and "make test" in readme


def test_setup_is_idempotent_when_everything_is_installed():
    """A second run installs nothing: every apt package and the venv stamp are already there."""
    res = subprocess.run(
        ["bash", str(ROOT / "scripts/setup.sh"), "--test"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "VAAR_VENV": str(Path(sys.prefix))},
    )
    assert res.returncode == 0, res.stderr
    assert "installing" not in res.stdout and "building" not in res.stdout, res.stdout
    assert "ready:" in res.stdout
