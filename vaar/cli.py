"""The `vaar` command line. Each concern keeps its commands next to its code (`commands.py`,
a list COMMANDS); this module only gathers them and turns VaarError into a clean message."""

from __future__ import annotations

import os
import sys

import click

from vaar import __version__
from vaar.errors import VaarError

EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug in vaar, not in the input


class VaarGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except VaarError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own: usage errors, --help, Ctrl-C at a prompt
        except Exception as exc:
            # The last line of defence only: every input has its own check with its own
            # message. VAAR_DEBUG=1 shows the traceback.
            if os.environ.get("VAAR_DEBUG"):
                raise
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            click.echo(
                f"internal error: {type(exc).__name__}: {detail[:300]} (a bug in vaar, not in "
                "your input: please report it with the command and its VAAR_DEBUG=1 traceback)",
                err=True,
            )
            sys.exit(EXIT_INTERNAL)


@click.group(cls=VaarGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vaar")
def main():
    """Measure value-action alignment of LLMs: give models privacy, prosocialness and
    data-sharing questionnaires, fit multi-group SEM in lavaan, score VAAR, write reports.

    \b
    Quick start (offline, simulated models):
      vaar run data/examples/demo.toml
    Then open reports/demo/index.html.
    """


def _register():
    from vaar import commands as pipeline_commands
    from vaar.collection import commands as collection_commands
    from vaar.data import commands as data_commands
    from vaar.instruments import commands as instrument_commands
    from vaar.report import rescore as rescore_commands
    from vaar.sem import commands as sem_commands
    from vaar.service import commands as service_commands

    for module in (
        instrument_commands,
        pipeline_commands,
        collection_commands,
        data_commands,
        sem_commands,
        rescore_commands,
        service_commands,
    ):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
