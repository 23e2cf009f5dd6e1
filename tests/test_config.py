"""The study file: good files validate, bad ones say which field is wrong and never traceback."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from vaar.cli import main
from vaar.config import load_study, parse_study
from vaar.errors import ConfigError

DEMO = Path(__file__).parents[1] / "data/examples/demo.toml"


def minimal(**over):
    raw = {
        "name": "t",
        "sessions_per_model": 5,
        "instruments": ["psa", "aods"],
        "models": [{"name": "m1", "provider": "simulated"}],
    }
    raw.update(over)
    return raw


def test_demo_study_validates():
    study = load_study(DEMO)
    assert study.sessions_per_model >= 200
    assert len(study.models) >= 4
    assert {m.provider for m in study.models} == {"simulated"}
    assert study.instruments == ["iuipc10", "psa", "aods"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"sessions_per_model": 0},
            "sessions_per_model: Input should be greater than or equal to 1",
        ),
        ({"instruments": ["psa", "nope"]}, "instruments: unknown instrument(s) ['nope']"),
        ({"instruments": ["psa", "psa"]}, "instruments: an instrument is listed twice"),
        (
            {"models": [{"name": "m1", "provider": "gpt"}]},
            "models[0].provider: unknown provider 'gpt' (known: ",
        ),
        (
            {"models": [{"name": "a", "provider": "simulated"}] * 2},
            "models: model names must be unique; repeated: ['a']",
        ),
        ({"sesions_per_model": 3}, "sesions_per_model: unknown field (check the spelling)"),
        (
            {"session": {"history": {"mode": "last_k"}}},
            "session.history: mode 'last_k' needs last_k",
        ),
        ({"analysis": {"estimator": "OLS"}}, "analysis.estimator: Input should be 'MLR', 'ML'"),
        ({"name": "has space"}, "name: String should match pattern"),
    ],
)
def test_bad_fields_are_named(change, expected):
    with pytest.raises(ConfigError) as err:
        parse_study(minimal(**change), source="s.toml")
    assert f"s.toml: {expected}" in str(err.value)


def test_every_problem_is_reported_at_once():
    raw = minimal(sessions_per_model=-1, instruments=[])
    with pytest.raises(ConfigError) as err:
        parse_study(raw)
    assert "sessions_per_model" in str(err.value) and "instruments" in str(err.value)


def test_unknown_provider_lists_known_ones():
    with pytest.raises(ConfigError, match="simulated"):
        parse_study(minimal(models=[{"name": "m", "provider": "nope"}]))


def test_cli_validate_ok_and_errors_without_traceback(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(main, ["validate", str(DEMO)])
    assert ok.exit_code == 0, ok.output
    assert "ok" in ok.output and "4 models x 200 sessions" in ok.output

    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nsessions_per_model = "many"\ninstruments = ["psa"]\n')
    res = runner.invoke(main, ["validate", str(bad)])
    assert res.exit_code == 2
    assert "sessions_per_model: Input should be a valid integer" in res.output
    assert "models: Field required" in res.output
    assert "Traceback" not in res.output

    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")
    res = runner.invoke(main, ["validate", str(broken)])
    assert res.exit_code == 2 and "not valid TOML" in res.output

    res = runner.invoke(main, ["validate", str(tmp_path / "missing.toml")])
    assert res.exit_code == 2 and "no such study file" in res.output
