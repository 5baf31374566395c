"""The `spillover` command: every subcommand registered in one place."""

from __future__ import annotations

import typer

from gateway.cli.capacity import plan
from gateway.cli.costs import costs
from gateway.cli.demo import demo
from gateway.cli.drill import drill_app
from gateway.cli.keys import keys_app, teams_app
from gateway.cli.pool import pool_app, sim_vllm
from gateway.cli.probe import health
from gateway.cli.serve import check_config, mock_provider, serve

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Spillover: a reliability gateway for LLM APIs.",
)
app.command("check-config")(check_config)
app.command()(serve)
app.command("mock-provider")(mock_provider)
app.command()(costs)
app.command()(demo)
app.command("sim-vllm")(sim_vllm)
app.command()(health)
app.command("plan")(plan)
app.add_typer(pool_app, name="pool")
app.add_typer(drill_app, name="drill")
app.add_typer(keys_app, name="keys")
app.add_typer(teams_app, name="teams")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
