"""`smfa bench import mllmu|clear` (published benchmarks into the smfa layout) and `smfa bench
spread` (a number's spread across seeds)."""

from __future__ import annotations

import importlib
from pathlib import Path

import click


@click.command("import")
@click.argument("dataset", type=click.Choice(["mllmu", "clear"]))
@click.option("--src", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The downloaded dataset: one folder per config holding its *.parquet files.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Benchmark directory to write.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the few-shot retain sets.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out.")
def import_cmd(dataset: str, src: Path, out: Path, seed: int, overwrite: bool) -> None:
    """Import DATASET (MLLMU-Bench or CLEAR, as published) from SRC into a benchmark at OUT."""
    from smfa_eval.importers import IMPORTERS
    from smfa_eval.schema import Bench, BenchDataError

    mod, _, fn = IMPORTERS[dataset].partition(":")
    try:
        path = getattr(importlib.import_module(mod), fn)(src, out, seed=seed, overwrite=overwrite)
        m = Bench(path).manifest
    except BenchDataError as exc:
        raise click.ClickException(str(exc)) from None
    sizes = ", ".join(f"{k} {len(v.forget)}+{len(v.retain_fewshot)}" for k, v in m.splits.items())
    click.echo(f"wrote {out}: {m.n_profiles} profiles from {dataset}; splits (forget+retain): {sizes}")


@click.command("spread")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--metric", default="fact", show_default=True, help="rougeL, fact, meaningful, refusal, ...")
@click.option("--phrasing", default="paraphrase", show_default=True)
def spread_cmd(results: tuple[Path, ...], metric: str, phrasing: str) -> None:
    """Mean ± standard deviation across seeds of every cell that two or more RESULTS
    (results.json of `smfa reproduce`, one per seed) report."""
    import json

    from smfa_eval.reproduce.uncertainty import seed_spread

    try:
        click.echo(seed_spread(list(results), metric, phrasing))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise click.ClickException(f"not a results.json of smfa reproduce: {exc}") from None


def register(cli: click.Group) -> None:
    """Add `import` and `spread` to the `bench` group of `cli`."""
    bench = cli.commands["bench"]
    assert isinstance(bench, click.Group)
    bench.add_command(import_cmd)
    bench.add_command(spread_cmd)
