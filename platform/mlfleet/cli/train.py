"""``mlfleet train``: search, refit, register and gate one model spec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mlfleet.cli.console import console, err_console
from mlfleet.settings import get_settings


def train(
    spec: Annotated[Path, typer.Argument(help="Model spec YAML (specs/NAME/model.yaml).")],
    dataset_version: Annotated[
        str | None,
        typer.Option(
            help="Train on this existing dataset version instead of validating the sources."
        ),
    ] = None,
    extra_source: Annotated[
        list[str] | None,
        typer.Option(
            "--extra-source",
            metavar="SOURCE",
            help="Another SOURCE (file, quoted glob, sqlite:///f.db?table=T) validated with the "
            "spec's sources for this run only, e.g. labelled feedback: "
            "'$MLFLEET_HOME/feedback/NAME/*.parquet'. Repeatable.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Validate the data, search on Ray Tune, register the best model and gate its promotion.

    Exit 0 when a version was registered, 1 when the data failed validation, 2 for usage
    errors (bad spec, unknown dataset version, --extra-source with --dataset-version).
    """
    from mlfleet.errors import UsageError
    from mlfleet.training.trials import TrialOutcome
    from mlfleet.training.warm import SpecSummary, train_on_head, warm_up_after

    extra_sources = list(extra_source or [])
    if extra_sources and dataset_version is not None:
        raise UsageError("--extra-source needs validating: it cannot go with --dataset-version")
    settings = get_settings()
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[best]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=as_json,
    ) as progress:
        # The spec's name, mode and size, once it is read (here, or by the warm trainer).
        state: dict[str, Any] = {"done": 0, "best": None, "name": spec.parent.name}
        task = progress.add_task(f"{state['name']}: starting", total=None, best="")

        def known(summary: SpecSummary) -> None:
            state["name"] = summary.name
            state["sign"] = 1 if summary.mode == "max" else -1
            state["total"] = summary.num_samples

        def stage(message: str) -> None:
            total = state["total"] if message.startswith("searching") else None
            progress.update(task, description=f"{state['name']}: {message}", total=total)
            if not as_json:
                err_console.print(f"  {escape(state['name'])}: {escape(message)}")

        def trial_done(outcome: TrialOutcome) -> None:
            state["done"] += 1
            if outcome.final_score is not None and outcome.final_fraction == 1.0:
                best, sign = state["best"], state["sign"]
                if best is None or sign * outcome.final_score > sign * best:
                    state["best"] = outcome.final_score
            best_txt = "" if state["best"] is None else f"best {state['best']:.4f}"
            progress.update(task, completed=state["done"], best=best_txt)

        # On mlfleet's local head a warm trainer does the work with everything loaded (and
        # reads the spec itself: reading it here would import scikit-learn for nothing).
        result = train_on_head(
            spec,
            settings,
            dataset_version=dataset_version,
            extra_sources=extra_sources,
            on_spec=known,
            on_trial_done=trial_done,
            on_stage=stage,
        )
        if result is None:
            from mlfleet.spec import load_spec
            from mlfleet.training.run import train as run_train

            loaded = load_spec(spec)
            known(SpecSummary.of(loaded))
            result = run_train(
                loaded,
                settings,
                dataset_version=dataset_version,
                extra_sources=extra_sources,
                on_trial_done=trial_done,
                on_stage=stage,
            )
            warm_up_after(settings)
    if as_json:
        print(json.dumps(result.to_json(), indent=2, default=str))
        return
    verdict = "[green]promoted to champion[/]" if result.promoted else "[yellow]challenger[/]"
    console.print(f"[bold]{result.name}[/] version [bold]{result.version}[/] {verdict}")
    console.print(
        f"  {result.metric} on holdout: {result.score:.4f}"
        + (
            ""
            if result.champion_score is None
            else f" (champion v{result.previous_champion}: {result.champion_score:.4f})"
        )
    )
    console.print(f"  decision: {escape(result.decision)}")
    console.print(
        f"  best: {result.best['estimator'].rsplit('.', 1)[-1]} "
        f"{escape(json.dumps(result.best['params'], default=str))}"
    )
    stopped = result.trials - result.trials_completed
    console.print(
        f"  trials: {result.trials}, {result.trials_completed} on all the data"
        + (f", {stopped} stopped early by ASHA" if stopped else "")
        + f"; {result.seconds:.0f}s in all"
    )
    console.print(f"  dataset version {result.dataset_version}, MLflow run {result.run_id}")
