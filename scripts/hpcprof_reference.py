"""Regenerate the hpcprof reference report under results/reference/hpcprof/.

Runs, on this machine: the C and NumPy apps under the callgrind backend (small sizes, where
valgrind is installed; the counted FP64 share), the built-in CPU suite under the timer
backend (default sizes; times, with analytic FLOPs), ``hpcprof compare`` for
Knights Landing 7210 -> Knights Mill 7295 (and the KNL 7250 and GPU models),
``hpcprof bits-needed``, the TSQR words/messages per tree shape, ``hpcprof bound`` for the
built-in loop nests and, where valgrind is installed, the bound against callgrind's
cache-simulation traffic.
Where likwid-perfctr can count the MEM group, the bound is also held against LIKWID's
measured memory traffic (else a skip line is printed).
Keeps only markdown and PNGs (a few hundred KB); run directories go to a temporary folder.

Usage: make reference   (or .venv/bin/python scripts/hpcprof_reference.py [--quick])
       .venv/bin/python scripts/hpcprof_reference.py --bound   (only the bound and traffic
       sections, replaced in place in the existing README; minutes, not the whole run)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "reference" / "hpcprof"
HPCPROF = [sys.executable, "-m", "hpcprof.cli.main"]
# NumPy kernels counted under callgrind (torch ones take minutes to import under valgrind)
CALLGRIND_PY_APPS = ("triad", "gemm", "cg", "stencil", "md", "lookup", "fft")
LINALG_APPS = ("glu", "rqr", "caqr", "krr")


def hp(*args: str) -> str:
    """Run one hpcprof command; its stdout."""
    proc = subprocess.run([*HPCPROF, *args], capture_output=True, text=True, check=False, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"hpcprof {' '.join(args)} failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def main(quick: bool) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="hpcprof-ref-"))
    sizes = "small" if quick else "default"
    parts = ["# hpcprof reference results\n"]
    if shutil.which("valgrind") and shutil.which("objdump"):
        # The FP64 share is counted, not modelled: callgrind counts each app's measured
        # region only (C: the kernel function; Python: the `with region:` block).
        apps = ("triad-c", "gemm-c", "cg-c", "stencil-c", *CALLGRIND_PY_APPS)
        cg = Path(hp("run", *[a for app in apps for a in ("--app", app)], "--sizes", "small",
                     "--backend", "callgrind", "-r", "1", "--warmup", "0", "--out", str(scratch),
                     "-q").strip().splitlines()[-1])  # fmt: skip
        parts += ["## FP64 share, counted by callgrind (C and NumPy apps, small sizes)\n",
                  hp("report", str(cg)), ""]  # fmt: skip
        shutil.copy(cg / "fp64_share.png", OUT / "callgrind_fp64_share.png")
        la = Path(hp("run", *[a for app in LINALG_APPS for a in ("--app", app)], "--sizes",
                     "small", "--backend", "callgrind", "-r", "1", "--warmup", "0", "--out",
                     str(scratch), "-q").strip().splitlines()[-1])  # fmt: skip
        parts += ["## FP64 share of the linear-algebra apps, counted by callgrind (small sizes)\n",
                  hp("report", str(la)), ""]  # fmt: skip
    timer = Path(hp("run", "--sizes", sizes, "--backend", "timer", "-r", "3", "--warmup", "1",
                    "--out", str(scratch), "-q").strip().splitlines()[-1])  # fmt: skip
    parts += [f"## Built-in suite, timer backend, {sizes} sizes (times measured; FLOPs and "
              "bytes analytic, so the FP64 share is 100% or 0% by construction)\n",
              hp("report", str(timer)), ""]  # fmt: skip
    shutil.copy(timer / "fp64_share.png", OUT / "timer_fp64_share.png")
    cmp_text = hp("compare", str(timer), "--machines", "knl-7210,knm-7295,knl-7250,a100,h100")
    parts += ["## Knights Landing 7210 -> Knights Mill 7295 (and KNL 7250, A100, H100) "
              "predictions\n",
              cmp_text.split("\n", 2)[2], ""]  # fmt: skip
    shutil.copy(timer / "roofline.png", OUT / "roofline_knl_knm.png")
    bits_dir = scratch / "bits"
    bits = hp("bits-needed", "--out", str(bits_dir), "-q", *(["--step", "4"] if quick else []))
    parts += ["## Mantissa bits needed\n", bits.split("\n", 2)[2], ""]
    shutil.copy(bits_dir / "bits_needed.png", OUT / "bits_needed.png")
    parts += ["## TSQR communication per tree shape (8 ranks, 16 columns)\n", _tsqr_table(), ""]
    parts += [f"{title}\n{body}" for title, body in _bound_sections(scratch, quick)]
    host = timer / "host.json"
    parts += ["## Host\n", "```json", host.read_text().strip(), "```", ""]
    (OUT / "README.md").write_text("\n".join(parts), encoding="utf-8")
    shutil.rmtree(scratch, ignore_errors=True)
    print(OUT / "README.md")


BOUND_TITLE = "## Communication lower bounds (hpcprof bound)"
CALLGRIND_TITLE = "## Bound vs measured LL-cache traffic (callgrind cache simulation)"
LIKWID_TITLE = "## Bound vs measured memory traffic (LIKWID MEM group)"


def _bound_sections(scratch: Path, quick: bool) -> list[tuple[str, str]]:
    """(title, body) of the bound table and of the traffic tables this machine can measure."""
    sections = [(BOUND_TITLE, hp("bound", "-M", "4096", "-M", "32768") + "\n")]
    if shutil.which("valgrind") and shutil.which("objdump"):
        sections.append((CALLGRIND_TITLE, _traffic(scratch, quick) + "\n"))
        shutil.copy(scratch / "traffic" / "traffic.png", OUT / "traffic_vs_bound.png")
    from hpcprof.backends.likwid import require_traffic_counters
    from hpcprof.errors import BackendError

    try:
        require_traffic_counters("MEM")
    except BackendError as exc:
        print(f"skipped: bound vs LIKWID MEM traffic ({exc})")
    else:
        from hpcprof.analysis.traffic import markdown, measure_likwid

        points = [measure_likwid("gemm-c", n, "MEM") for n in (256, 512, 1024)]
        sections.append((LIKWID_TITLE, markdown(points) + "\n"))
    return sections


def bound_only(quick: bool) -> None:
    """Replace the bound and traffic sections of the existing reference README in place."""
    readme = OUT / "README.md"
    text = readme.read_text(encoding="utf-8")
    scratch = Path(tempfile.mkdtemp(prefix="hpcprof-ref-"))
    for title, body in _bound_sections(scratch, quick):
        start = text.find(title + "\n")
        if start < 0:  # a section this machine adds for the first time goes before ## Host
            start = text.find("## Host\n")
            if start < 0:
                raise SystemExit(f"{readme}: no section {title!r} or ## Host; run the whole script")
            text = text[:start] + f"{title}\n{body}\n" + text[start:]
            continue
        end = text.find("\n## ", start + len(title))
        text = text[:start] + f"{title}\n{body}" + (text[end + 1 :] if end >= 0 else "")
    readme.write_text(text, encoding="utf-8")
    shutil.rmtree(scratch, ignore_errors=True)
    print(readme)


def _tsqr_table() -> str:
    """Words and messages of the busiest rank, and of a leaf rank, per tree arity."""
    from hpcprof.apps.caqr import BLOCKS, COLUMNS, critical_path, levels, traffic
    from precision.common.markdown import markdown_table

    rows = [("tree arity", "rounds", "busiest rank: words", "busiest rank: messages",
             "leaf rank 1: words", "leaf rank 1: messages")]  # fmt: skip
    for arity in (2, 4, BLOCKS):
        words, msgs = critical_path(BLOCKS, COLUMNS, arity)
        leaf = traffic(BLOCKS, COLUMNS, arity)[1]
        rounds = len(levels(BLOCKS, arity))
        rows.append((str(arity), str(rounds), str(words), str(msgs),
                     str(leaf.words_sent + leaf.words_received),
                     str(leaf.messages_sent + leaf.messages_received)))  # fmt: skip
    return markdown_table(rows)


def _traffic(scratch: Path, quick: bool) -> str:
    """Bound vs measured for GEMM (C and NumPy), MD and the training kernels (torch runs
    take minutes each under valgrind: one memory size only)."""
    from hpcprof.analysis.traffic import markdown, measure, plot

    runs = [("gemm-c", 64), ("gemm-c", 128)]
    if not quick:
        runs += [("gemm-c", 256), ("gemm", 128), ("gemm", 256), ("md", 3), ("md", 4)]
    points = [measure(app, size, m) for app, size in runs for m in (1024, 8192)]
    if not quick:
        points += [
            measure(app, size, 8192) for app, size in (("gemm-train", 64), ("conv2d-train", 1))
        ]
    (scratch / "traffic").mkdir(parents=True, exist_ok=True)
    plot(points, scratch / "traffic" / "traffic.png")
    return markdown(points)


if __name__ == "__main__":
    if "--bound" in sys.argv[1:]:
        bound_only(quick="--quick" in sys.argv[1:])
    else:
        main(quick="--quick" in sys.argv[1:])
