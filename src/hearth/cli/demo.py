"""``hearth demo``: synthetic demo data."""

from __future__ import annotations

import click

from hearth.cli.common import RichProgress, State, container, count, handle_errors, pass_state
from hearth.services.demo import load_demo


@click.group("demo")
def command() -> None:
    """Synthetic data for trying Hearth out (never real patients)."""


@command.command("load")
@click.option("--patients", type=click.IntRange(1, 1_000_000), default=300, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@pass_state
@handle_errors
def load(state: State, patients: int, seed: int) -> None:
    """Create synthetic patients with encounters, conditions and observations.

    \b
    Example:
      hearth --home ./var demo load --patients 300
    """
    with container(state, bulk=True) as c:
        repo = c.repository(c.system_principal("demo-loader"))
        summary = load_demo(
            repo, patients=patients, seed=seed, now=c.clock.now(), progress=RichProgress()
        )
    loaded = count(summary.patients, "synthetic patient")
    click.echo(f"Loaded {loaded} ({count(summary.resources, 'resource')}).")
