"""vaar as a user gets it: the wheel built from this tree, installed into a fresh virtualenv,
run from a folder outside the repository. Only what the wheel ships is there: the instruments,
the human reference, the R functions, the templates. The third-party dependencies are this
venv's own (a .pth line), so nothing is downloaded; the repository is never on sys.path."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from vaar.instruments import instrument_ids

ROOT = Path(__file__).parents[1]
STUDY = """name = "wheel"
seed = 3
sessions_per_model = 60
instruments = ["iuipc10", "psa", "aods"]
output_dir = "out"
[analysis]
estimator = "ML"
levels = ["configural"]
missing = "listwise"
[[models]]
name = "sim-aligned"
provider = "simulated"
params = { profile = "aligned" }
[[models]]
name = "sim-reversed"
provider = "simulated"
params = { profile = "reversed" }
"""

pytestmark = pytest.mark.slow


def run(*cmd, cwd, env=None) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{cmd}: {done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(vaar executable, a folder outside the repository, the venv's environment, its
    site-packages)."""
    tmp = tmp_path_factory.mktemp("wheel")
    # Built from a copy, so no build/ folder in the tree leaks stale files into the wheel.
    src = tmp / "src"
    shutil.copytree(ROOT / "vaar", src / "vaar", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist", src, cwd=tmp)
    (wheel,) = (tmp / "dist").glob("vaar-*.whl")

    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    python = venv / "bin" / "python"
    where = run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp)
    site = Path(where.stdout.strip())
    # the dependencies from this venv; its .pth files (vaar's editable finder) are not read
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # --ignore-installed: this venv's vaar (its dist-info is visible through the .pth) is not
    # the wheel's, whatever pip would otherwise conclude from the same version number
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps"]
    run(*pip, "--no-index", "--ignore-installed", wheel, cwd=tmp)

    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return venv / "bin" / "vaar", elsewhere, env, site


def test_the_installed_vaar_is_the_wheel_not_the_checkout(installed):
    vaar, cwd, env, site = installed
    python = vaar.with_name("python")
    where = run(python, "-c", "import vaar; print(vaar.__file__)", cwd=cwd, env=env).stdout
    assert Path(where.strip()) == site / "vaar" / "__init__.py"


def test_instruments_list_shows_every_shipped_instrument(installed):
    vaar, cwd, env, _ = installed
    lines = run(vaar, "instruments", "list", cwd=cwd, env=env).stdout.splitlines()
    assert [line.split()[0] for line in lines[1:]] == instrument_ids()


def test_a_study_validates_and_runs_to_a_report(installed):
    vaar, cwd, env, site = installed
    (cwd / "study.toml").write_text(STUDY)
    checked = run(vaar, "validate", "study.toml", cwd=cwd, env=env).stdout
    assert checked.startswith("study.toml: ok")

    run(vaar, "run", "study.toml", cwd=cwd, env=env)
    out = cwd / "out"
    assert (out / "index.html").is_file()
    doc = json.loads((out / "estimates.json").read_text())
    # the reference the wheel ships gives the planted signs their meaning
    soft = {s["model"]: s["vaar_soft"] for s in doc["alignment"]["scores"]}
    assert soft["sim-aligned"] > 0.5 > soft["sim-reversed"]
    # the wheel ships every R file of the tree; the bundle's are the ones it installed
    shipped = site / "vaar" / "sem" / "r"
    assert names(shipped.glob("*.R")) == names((ROOT / "vaar" / "sem" / "r").glob("*.R"))
    bundled = list((out / "bundle" / "r").glob("*.R"))
    assert "ladder.R" in names(bundled)
    for path in bundled:
        assert path.read_bytes() == (shipped / path.name).read_bytes()


def names(paths) -> list[str]:
    return sorted(p.name for p in paths)
