"""``hpcprof machines``, ``hpcprof compare`` and ``hpcprof bits-needed``: analysis commands."""

from __future__ import annotations

from pathlib import Path

import click

from hpcprof.analysis.bits import DEFAULT_TOLERANCE, MANTISSA_RANGE
from hpcprof.analysis.emulate import EMULATIONS
from hpcprof.cli.common import UsageError, name_int_pairs, reported
from hpcprof.machines.model import Machine, MemoryKind
from precision.common.registry import Registry


def _registry(machines_file: str | None) -> Registry[Machine]:
    from hpcprof.machines.data import MACHINES
    from hpcprof.machines.model import load_machines

    return MACHINES if machines_file is None else MACHINES.merged(load_machines(machines_file))


_MACHINES_FILE = click.option(
    "--machines-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML file with more machine models ([[machine]] tables).",
)


@click.command("machines")
@_MACHINES_FILE
@reported
def machines(machines_file: str | None) -> None:
    """List the machine models (built-in and from --machines-file) with their sources."""
    from hpcprof.analysis.roofline import machines_markdown

    registry = _registry(machines_file)
    click.echo(machines_markdown([registry[n] for n in registry]), nl=False)


@click.command("compare")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--machines",
    "names",
    default="knl-7210,knm-7295",
    show_default=True,
    help="Comma-separated machine names; time ratios are relative to the first. The default "
    "KNL is the 7210 of the original KNL -> KNM study (MCDRAM at 6.4 GT/s: memory-bound "
    "ratios differ from the 7250's).",
)
@_MACHINES_FILE
@click.option(
    "--memory",
    type=click.Choice([k.value for k in MemoryKind if k is not MemoryKind.MEASURED]),
    default=None,
    help="Memory to use where a machine has it (default: each machine's first listed).",
)
@click.option("--matrix/--no-matrix", default=False, show_default=True,
              help="Let FLOPs use special-unit peaks: tensor/matrix units, Knights Mill "
                   "AVX512_4FMAPS, AVX512_BF16 dot products.")  # fmt: skip
@click.option("--measure-host", is_flag=True,
              help="Measure this host's ceilings (GEMM, triad) and add it as machine 'host'.")  # fmt: skip
@click.option("--png/--no-png", default=True, show_default=True, help="Write roofline.png.")
@reported
def compare(
    run_dir: Path,
    names: str,
    machines_file: str | None,
    memory: str | None,
    matrix: bool,
    measure_host: bool,
    png: bool,
) -> None:
    """Place each app of RUN_DIR on the machines' rooflines and predict its time ratio.

    Writes compare.md (and roofline.png) into RUN_DIR and prints the markdown.
    """
    from hpcprof.analysis.predict import compare as compare_rows
    from hpcprof.analysis.predict import skipped
    from hpcprof.analysis.roofline import compare_markdown, machines_markdown, plot_roofline
    from hpcprof.results.report import summarize
    from hpcprof.results.store import read_run, write_text

    registry = _registry(machines_file)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    if not wanted:
        raise UsageError("--machines: name at least one machine")
    chosen: list[Machine] = [registry[n] for n in wanted]
    kind = None if memory is None else MemoryKind(memory)
    frame, config = read_run(run_dir)
    summary = summarize(frame)
    host = None
    if measure_host:
        from hpcprof.machines.hostpeak import measure_host as measure

        host = measure()
        chosen.append(host)
    rows = compare_rows(summary, chosen, host=host, memory=kind, matrix=matrix)
    title = f"# hpcprof compare: run {config.get('run_id', run_dir.name)}"
    text = (
        f"{title} (backend {config.get('backend_used')})\n\n"
        + compare_markdown(rows, chosen, skipped(summary))
        + "\n## Machines\n\n"
        + machines_markdown(chosen, kind)
    )
    write_text(run_dir / "compare.md", text)
    if png:
        plot_roofline(summary, rows, chosen, run_dir / "roofline.png", memory=kind)
    click.echo(text, nl=False)


@click.command("bits-needed")
@click.option("--app", "apps", multiple=True, type=click.Choice(list(EMULATIONS)),
              help="App to sweep (repeatable; default: all with an emulated version).")  # fmt: skip
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TOLERANCE,
    show_default=True,
    help="Largest self-check error that counts as a pass.",
)
@click.option("--size", "size_overrides", multiple=True, metavar="APP=N", help="Size for one app.")
@click.option(
    "--min-bits", type=click.IntRange(1, 52), default=MANTISSA_RANGE[0], show_default=True
)
@click.option(
    "--max-bits", type=click.IntRange(1, 52), default=MANTISSA_RANGE[1], show_default=True
)
@click.option("--step", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("results/hpcprof/bits-needed"), show_default=True)  # fmt: skip
@click.option("--png/--no-png", default=True, show_default=True, help="Write bits_needed.png.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
@reported
def bits_needed(
    apps: tuple[str, ...],
    tolerance: float,
    size_overrides: tuple[str, ...],
    min_bits: int,
    max_bits: int,
    step: int,
    out_dir: Path,
    png: bool,
    quiet: bool,
) -> None:
    """Rerun apps with emulated e11m{M} arithmetic and report the fewest mantissa bits
    whose self-check error stays within --tolerance (plus float32 and bfloat16)."""
    import pandas as pd

    from hpcprof.analysis.bits import markdown, plot, result, sweep
    from hpcprof.results.store import write_text

    if min_bits > max_bits:
        raise UsageError(f"--min-bits {min_bits} is above --max-bits {max_bits}")
    sizes = dict(name_int_pairs(size_overrides, "--size", example="cg=8"))
    unknown = sorted(set(sizes) - set(EMULATIONS))
    if unknown:
        raise UsageError(f"--size {unknown[0]}: no emulated app of that name")
    bits = list(range(max_bits, min_bits - 1, -step))[::-1]
    points, results = [], []
    for app in apps or tuple(EMULATIONS):
        mine = sweep(
            app,
            size=sizes.get(app),
            mantissa_bits=bits,
            progress=None if quiet else (lambda label: click.echo(f"[bits] {label}", err=True)),
        )
        points += mine
        results.append(result(mine, tolerance))
    out_dir.mkdir(parents=True, exist_ok=True)
    text = (
        f"# Mantissa bits needed (tolerance {tolerance:.0e}; e11m{{M}} formats, M = "
        f"{bits[0]}..{bits[-1]})\n\n" + markdown(results, points)
    )
    write_text(out_dir / "bits_needed.md", text)
    table = pd.DataFrame([p.__dict__ for p in points])
    write_text(out_dir / "bits_needed.csv", table.to_csv(index=False))
    if png:
        plot(points, tolerance, out_dir / "bits_needed.png")
    click.echo(text, nl=False)
