"""Errors a user can act on. The CLI prints them without a traceback and exits non-zero."""


class VaarError(Exception):
    """Something the user can fix: bad input, a missing file, an unreachable provider."""


class ConfigError(VaarError):
    """A study or instrument file that does not validate; the message names each field."""


def format_validation_error(source: str, exc, prefix: str = "") -> str:
    """Render a pydantic ValidationError as one line per problem: `source: a.b[2].c: message`
    (`prefix`: where the validated object sits, e.g. "params" gives `source.params.key`)."""
    lines = []
    for err in exc.errors():
        where = prefix
        for part in err["loc"]:
            where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling)"
        lines.append(f"{source}{'.' if prefix else ': '}{where or '(top level)'}: {msg}")
    return "\n".join(lines)
