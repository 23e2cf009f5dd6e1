"""Third-party providers: a distribution's entry point in the group `vaar.providers` adds a
provider, found the way importlib.metadata finds any installed distribution. The distribution
here is a real one on disk (a dist-info folder with entry_points.txt next to its modules),
put on sys.path; the study is validated by the same code as a built-in's and collected by the
real runner."""

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vaar import registry
from vaar.collection import collect
from vaar.collection.providers import provider_class
from vaar.config import parse_study
from vaar.data import long_table
from vaar.errors import ConfigError

PLUGIN = {
    "vaar_echo/__init__.py": """
        from vaar.registry import Entry, GenerationParams


        class EchoParams(GenerationParams):
            answer: int = 3


        PROVIDER = Entry("vaar_echo.provider:EchoProvider", EchoParams)
        ELSEWHERE = Entry("vaar_echo.nowhere:EchoProvider", EchoParams)
        NOT_AN_ENTRY = ("vaar_echo.provider:EchoProvider", EchoParams)
        NO_SCHEMA = Entry("vaar_echo.provider:EchoProvider", dict)
    """,
    "vaar_echo/provider.py": """
        from vaar.collection.providers import ChatReply, Provider


        class EchoProvider(Provider):
            name = "echo"

            async def complete(self, request):
                return ChatReply(str(self.params.answer), {"model": self.model_id}, {}, 5, 1)
    """,
    "vaar_boom.py": """
        raise RuntimeError("boom at import")
    """,
    "vaar_echo-0.1.dist-info/METADATA": """
        Metadata-Version: 2.1
        Name: vaar-echo
        Version: 0.1
    """,
    "vaar_echo-0.1.dist-info/entry_points.txt": """
        [vaar.providers]
        echo = vaar_echo:PROVIDER
        elsewhere = vaar_echo:ELSEWHERE
        missing = vaar_missing:PROVIDER
        boom = vaar_boom:PROVIDER
        tuple = vaar_echo:NOT_AN_ENTRY
        noschema = vaar_echo:NO_SCHEMA
        simulated = vaar_echo:PROVIDER
    """,
}


def fresh_registry():
    registry._plugins.cache_clear()
    registry._load_plugin.cache_clear()


@pytest.fixture
def plugin_dir(tmp_path):
    root = tmp_path / "site"
    for rel, text in PLUGIN.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


@pytest.fixture
def installed(plugin_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    fresh_registry()
    yield plugin_dir
    fresh_registry()
    for name in [m for m in sys.modules if m.startswith(("vaar_echo", "vaar_boom"))]:
        del sys.modules[name]


def study(tmp_path, provider="echo", params=None, sessions=3):
    return parse_study(
        {
            "name": "plugin",
            "sessions_per_model": sessions,
            "instruments": ["psa", "aods"],
            "output_dir": str(tmp_path / "out"),
            "models": [{"name": "m", "provider": provider, "params": params or {}}],
        },
        source="s.toml",
    )


def test_an_installed_plugin_is_a_known_provider(installed):
    known = registry.known_providers()
    assert {"echo", "elsewhere", "missing", "boom", "simulated", "openai"} <= set(known)
    assert known == sorted(set(known))


def test_without_the_plugin_its_name_is_unknown(tmp_path):
    fresh_registry()
    assert "echo" not in registry.known_providers()
    with pytest.raises(ConfigError, match=r"models\[0\]\.provider: unknown provider 'echo'"):
        study(tmp_path)


def test_a_plugin_study_is_collected_by_the_real_runner(installed, tmp_path):
    s = study(tmp_path, params={"answer": 4})
    summary = asyncio.run(collect(s, progress=False))
    assert summary.complete, summary.lines()
    long = long_table(s.out_path / "collection.sqlite")
    assert len(long) == 3 * (16 + 12)
    assert set(long["status"]) == {"ok"} and set(long["value"]) == {4.0}
    assert summary.models["m"]["prompt_tokens"] == 5 * len(long)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"colour": "red"}, "models[0].params.colour: unknown parameter for provider 'echo'"),
        ({"answer": "many"}, "models[0].params.answer: Input should be a valid integer"),
        ({"max_tokens": 0}, "models[0].params.max_tokens: Input should be greater than"),
    ],
)
def test_a_plugin_schema_is_enforced_like_a_builtin(installed, tmp_path, params, expected):
    with pytest.raises(ConfigError) as err:
        study(tmp_path, params=params)
    assert f"s.toml: {expected}" in str(err.value)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("missing", "cannot be loaded: ModuleNotFoundError: No module named 'vaar_missing'"),
        ("boom", "cannot be loaded: RuntimeError: boom at import"),
        ("tuple", "is not a vaar.registry.Entry"),
        ("noschema", "is not a vaar.registry.Entry"),
    ],
)
def test_a_broken_plugin_is_one_line_naming_it(installed, tmp_path, name, expected):
    with pytest.raises(ConfigError) as err:
        study(tmp_path, provider=name)
    message = str(err.value)
    assert message.startswith(f"s.toml: models[0].provider: provider plugin {name!r} (")
    assert "from vaar-echo" in message and expected in message
    assert "\n" not in message


def test_a_plugin_whose_implementation_is_missing_fails_before_any_request(installed, tmp_path):
    s = study(tmp_path, provider="elsewhere")  # the schema is there; the class is not
    with pytest.raises(ConfigError, match=r"provider 'elsewhere': cannot import vaar_echo\.now"):
        provider_class("elsewhere")
    with pytest.raises(ConfigError, match="cannot import"):
        asyncio.run(collect(s, progress=False))


def test_a_plugin_cannot_replace_a_builtin(installed):
    assert registry.provider_entry("simulated") is registry.PROVIDERS["simulated"]
    assert registry.known_providers().count("simulated") == 1


def test_the_cli_finds_an_installed_plugin(plugin_dir, tmp_path):
    """`vaar validate` in a new process: the plugin found through sys.path as pip would put it,
    a broken one reported on one line with exit 2."""
    env = {**os.environ, "PYTHONPATH": str(plugin_dir)}
    vaar = Path(sys.executable).with_name("vaar")
    for provider, code, expected in [
        ("echo", 0, "s.toml: ok"),
        ("boom", 2, "error: s.toml: models[0].provider: provider plugin 'boom'"),
    ]:
        (tmp_path / "s.toml").write_text(
            f'name = "p"\nsessions_per_model = 2\ninstruments = ["psa", "aods"]\n'
            f'[[models]]\nname = "m"\nprovider = "{provider}"\n'
        )
        done = subprocess.run(
            [vaar, "validate", "s.toml"], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == code, done.stderr
        out = (done.stdout + done.stderr).strip()
        assert out.startswith(expected) and "Traceback" not in out
        assert len(out.splitlines()) == 1
