"""The `vaar` command line. Each concern keeps its commands next to its code (`commands.py`,
a list COMMANDS); this module only gathers them and turns VaarError into a clean message."""

from __future__ import annotations

import sys

import click

from vaar import __version__
from vaar.errors import VaarError


class VaarGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except VaarError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


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
    from vaar.alignment import commands as alignment_commands
    from vaar.collection import commands as collection_commands
    from vaar.instruments import commands as instrument_commands
    from vaar.report import commands as report_commands
    from vaar.sem import commands as sem_commands
    from vaar.service import commands as service_commands

    for module in (
        instrument_commands,
        pipeline_commands,
        collection_commands,
        sem_commands,
        alignment_commands,
        report_commands,
        service_commands,
    ):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
