"""The ``labelwise`` command: a thin adapter that parses, calls the library and maps errors.

This package holds the Typer ``app`` (and its ``benchmark`` group) and :func:`main`, the console
entry point; the commands live in modules by concern and are registered here, in the order
``labelwise --help`` lists them:

- :mod:`labelwise.cli.common`: what every command shares (errors as one line, data warnings,
  progress bars, list parsing, the shared options);
- :mod:`labelwise.cli.projects`: ``init``, ``import``, ``token``, ``config``, ``export``,
  ``backup``, ``status``;
- :mod:`labelwise.cli.learning`: ``simulate``, ``benchmark lu2023``, ``triage``,
  ``strategies``, ``models``, ``embedders``;
- :mod:`labelwise.cli.serving`: ``serve``, ``worker``, ``demo``;
- :mod:`labelwise.cli.scale`: ``partition``, ``score``.

Every deliberate error (:class:`~labelwise.exceptions.LabelwiseError`) ends the command with one
line on stderr and exit status 2; nothing here prints tracebacks on bad input (see
:func:`labelwise.cli.common.errors_to_exit`). What the data import finds suspicious
(:class:`~labelwise.exceptions.DataWarning`) is one ``warning:`` line each on stderr.

Help is Markdown (a paragraph's line breaks are not kept), and options that take no value
(flags, ``--help``) show no type.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from labelwise.cli import learning, projects, scale, serving


def _quiet_flags(params: list[Any]) -> None:
    """Options that take no value (flags, ``--help``) get no type in help (typer shows
    ``<bool>``), and a flag that is off by default no ``[default: no-...]``."""
    for param in params:
        if getattr(param, "is_flag", False) and getattr(param, "metavar", "") is None:
            param.metavar = ""
            if param.default is False:
                param.show_default = False


class _HelpGroup(TyperGroup):
    """A command group whose help, and its commands' help, has no noise (:func:`_quiet_flags`)."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        _quiet_flags([option])
        return option

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _quiet_flags([*command.params, command.get_help_option(ctx)])
        return command


app = typer.Typer(
    name="labelwise",
    help="Human-in-the-loop active learning: let the model choose what your experts label next.",
    cls=_HelpGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
benchmark_app = typer.Typer(
    help="Reproduce published active-learning benchmarks.",
    cls=_HelpGroup,
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
app.add_typer(benchmark_app, name="benchmark")


# In the order of `labelwise --help` (the benchmark group is listed after the commands).
app.command()(learning.simulate)
benchmark_app.command("lu2023")(learning.benchmark_lu2023)
app.command()(projects.init)
app.command("import")(projects.import_)
app.command()(projects.token)
app.command()(projects.config)
app.command()(projects.export)
app.command()(projects.backup)
app.command("triage")(learning.triage_)
app.command()(projects.status)
app.command()(serving.worker)
app.command()(scale.partition)
app.command()(scale.score)
app.command()(serving.serve)
app.command()(serving.demo)
app.command()(learning.strategies)
app.command()(learning.models)
app.command()(learning.embedders)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
