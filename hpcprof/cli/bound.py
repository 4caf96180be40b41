"""``hpcprof bound``: communication lower bounds of loop nests, optionally held against the
traffic measured for the matching apps: callgrind's cache simulation (an LL cache of M
words) or LIKWID's MEM/L3/L2 data volumes on the host's real caches."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from hpcprof.cli.common import UsageError, name_int_pairs, reported

if TYPE_CHECKING:
    from hpcprof.analysis.traffic import TrafficPoint

DEFAULT_MEMORY = (32768,)


def bound_table(names: tuple[str, ...], files: tuple[str, ...], overrides: dict[str, int],
                memories: tuple[int, ...]) -> str:  # fmt: skip
    """Markdown table of bounds and tilings (library errors propagate)."""
    from hpcprof.analysis.bound import NestError, lower_bound
    from hpcprof.analysis.nests import NESTS, load_nest, nest_info
    from precision.common.markdown import markdown_table

    nests = []
    for name in names or (() if files else tuple(NESTS)):
        info = nest_info(name)
        own = {k: v for k, v in overrides.items() if k in dict(info.loops)}
        nests.append(info.build(own))
    nests += [load_nest(f) for f in files]
    unused = set(overrides) - {n for nest in nests for n, _ in nest.loops}
    if unused:
        raise NestError(f"--set {sorted(unused)[0]}: no selected nest has that loop")
    rows = [("nest", "loops", "M (words)", "LP exponent", "lower bound (words)", "compulsory",
             "tile", "tiling's words", "tiling / bound")]  # fmt: skip
    for nest in nests:
        loops = " ".join(f"{n}={b}" for n, b in nest.loops)
        for m in memories:
            b = lower_bound(nest, m)
            tile = " ".join(f"{n}={s}" for n, s in b.tile)
            rows.append((nest.name, loops, str(m), f"{b.exponent:.4f}", f"{b.words:.4g}",
                         f"{b.compulsory_words:.4g}", tile, f"{b.tiled_words:.4g}",
                         f"{b.tiled_over_bound:.2f}"))  # fmt: skip
    return markdown_table(rows)


def _measure(requests: list[tuple[str, int]], memories: tuple[int, ...], traffic: str,
             group: str) -> list[TrafficPoint]:  # fmt: skip
    """Traffic points: one per app, size and M under callgrind, one per app and size under
    likwid (M is the hardware cache). likwid missing or without counters: exit 2."""
    from hpcprof.analysis.traffic import measure, measure_likwid
    from hpcprof.errors import BackendError

    if traffic == "callgrind":
        return [measure(app, size, m) for app, size in requests for m in memories]
    try:
        return [measure_likwid(app, size, group) for app, size in requests]
    except BackendError as exc:
        raise UsageError(f"--traffic likwid: {exc}") from None


@click.command("bound")
@click.argument("nests", nargs=-1)
@click.option(
    "--file",
    "files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Loop nest described in TOML (repeatable).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="LOOP=N",
    help="Loop bound, for every selected nest that has the loop.",
)
@click.option(
    "--memory",
    "-M",
    "memories",
    multiple=True,
    type=click.IntRange(min=2),
    help=f"Fast memory in words (repeatable; default {DEFAULT_MEMORY[0]}).",
)
@click.option("--list", "list_only", is_flag=True, help="List the built-in nests.")
@click.option(
    "--measure",
    "measure",
    multiple=True,
    metavar="APP=N",
    help="Also run APP at size N, measure its traffic (see --traffic) and report "
    "measured / bound (repeatable).",
)
@click.option(
    "--traffic",
    type=click.Choice(["callgrind", "likwid"]),
    default="callgrind",
    show_default=True,
    help="callgrind: cache simulation with an LL of M words (each --memory); likwid: "
    "likwid-perfctr data volume of --likwid-group, M = the host's cache below it.",
)
@click.option(
    "--likwid-group",
    type=click.Choice(["MEM", "L3", "L2"]),
    default="MEM",
    show_default=True,
    help="LIKWID group for --traffic likwid: MEM (LLC-DRAM), L3 (L2-L3), L2 (L1-L2).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write bound.md (and traffic.md, traffic.png with --measure) here.",
)
@reported
def bound(nests: tuple[str, ...], files: tuple[str, ...], overrides: tuple[str, ...],
          memories: tuple[int, ...], list_only: bool, measure: tuple[str, ...], traffic: str,
          likwid_group: str, out_dir: str | None) -> None:  # fmt: skip
    """Lower bound on words moved for fast memory M (arXiv 2003.00119), and a tiling.

    NESTS are built-in names (default: all); see --list.
    """
    from hpcprof.results.store import write_text

    if list_only:
        from hpcprof.analysis.nests import NESTS

        for info in NESTS.values():
            loops = " ".join(f"{n}={b}" for n, b in info.loops)
            app = f"  [app: {info.app}]" if info.app else ""
            click.echo(f"{info.name:<12} {info.summary}  ({loops}){app}")
        return
    memories = memories or DEFAULT_MEMORY
    requests = list(name_int_pairs(measure, "--measure", example="gemm-c=128"))
    if requests and traffic == "likwid":
        from hpcprof.backends.likwid import require_traffic_counters
        from hpcprof.errors import BackendError

        try:
            require_traffic_counters(likwid_group)
        except BackendError as exc:
            raise UsageError(f"--traffic likwid: {exc}") from None
    if requests and traffic == "callgrind":
        from hpcprof.analysis.traffic import check_request

        for app, _ in requests:
            for m in memories:
                check_request(app, m)
    text = bound_table(
        nests,
        files,
        dict(name_int_pairs(overrides, "--set", example="i=1024", what="NAME")),
        memories,
    )
    click.echo(text, nl=False)
    out = Path(out_dir) if out_dir else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "bound.md", text)
    if requests:
        from hpcprof.analysis.traffic import markdown, plot

        points = _measure(requests, memories, traffic, likwid_group)
        table = markdown(points)
        click.echo("\n" + table, nl=False)
        if out is not None:
            write_text(out / "traffic.md", table)
            plot(points, out / "traffic.png")
