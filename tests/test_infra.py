"""The install path and the image definition, checked statically (`make image-test` builds the
image and runs it for real: scripts/image-test.sh)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def test_dockerfile_is_hadolint_clean():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    res = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_dockerfile_uses_the_one_setup_script():
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG BASE=debian:bookworm-slim" in text and text.count("FROM ${BASE}") == 2
    assert "RUN bash scripts/setup.sh" in text and "scripts/setup.sh --runtime" in text
    assert 'ENTRYPOINT ["vaar"]' in text


def test_ci_and_make_use_the_same_setup_and_readme_commands():
    ci = (ROOT / ".ci/run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make image-test" in ci
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


def test_setup_runtime_only_adds_packages_to_an_installed_venv(tmp_path):
    """--runtime (the image's final stage) installs nothing here and needs vaar installed."""

    def runtime(venv):
        cmd = ["bash", str(ROOT / "scripts/setup.sh"), "--runtime"]
        env = {**os.environ, "VAAR_VENV": str(venv)}
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)

    res = runtime(Path(sys.prefix))
    assert res.returncode == 0 and "installing" not in res.stdout, res.stdout + res.stderr
    res = runtime(tmp_path / "none")
    assert res.returncode == 1 and "--runtime needs vaar already installed" in res.stdout


LAZY_PACKAGES = ["vaar.alignment", "vaar.collection", "vaar.report", "vaar.sem"]


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_lazy_exports_resolve_to_their_objects_not_to_submodules(package):
    """A lazily exported name that is also a submodule's name would turn into that module once
    the submodule is imported (Python sets the attribute), e.g. `profiles` the function."""
    import importlib
    import pkgutil
    import types

    module = importlib.import_module(package)
    submodules = {m.name for m in pkgutil.iter_modules(module.__path__)}
    assert not set(module.EXPORTS) & submodules
    for name, submodule in module.EXPORTS.items():
        importlib.import_module(f"{package}.{submodule}")  # as any other import would
        value = getattr(module, name)
        assert not isinstance(value, types.ModuleType), name
        assert value is getattr(importlib.import_module(f"{package}.{submodule}"), name)
