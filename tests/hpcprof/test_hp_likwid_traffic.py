"""LIKWID traffic for ``hpcprof bound --measure --traffic likwid``: data volumes parsed from
captured likwid-perfctr MEM output (checked against the raw CAS counts), the cache-size
probe, the CLI's exit-2 path where likwid is missing, and a live run where counters exist."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from hp_data import fixture_text

from hpcprof.backends.likwid import (
    TableKind,
    cache_bytes,
    parse_likwid,
    require_traffic_counters,
    traffic_bytes,
)
from hpcprof.cli.main import main
from hpcprof.errors import BackendError

D = "likwid-perfctr/"
HASWELL_MARKER = D + "haswellep_e5-2697v3_mem_marker_csv_18regions_dash_values.txt"


def _likwid_reason() -> str | None:
    try:
        require_traffic_counters("MEM")
    except BackendError as exc:
        return str(exc)
    return None


def test_mem_data_volume_of_every_region_is_the_cas_count_in_bytes() -> None:
    out = parse_likwid(fixture_text(HASWELL_MARKER))
    regions = out.regions()
    assert len(regions) == 17  # degrees 2..18 (the file name says 18)
    for region in regions:
        raw = out.table(region, TableKind.EVENTS)
        assert raw is not None
        cas = sum(v for r in raw.rows if r.name.startswith("CAS_COUNT") for v in r.values if v)
        # LIKWID: volume = (CAS_COUNT_RD + CAS_COUNT_WR) x 64 bytes over the MBOXes that
        # count ("-" where a channel is unavailable); printed to 7 significant digits
        assert traffic_bytes(out, "MEM", region) == pytest.approx(64 * cas, rel=1e-6)
    assert traffic_bytes(out, "MEM", "1D-MATVEC_Kernel-Degree-2") == pytest.approx(10240)


def test_wrapper_layout_reads_the_same_volume() -> None:
    wrapper = parse_likwid(
        fixture_text(D + "haswellep_e5-2697v3_mem_wrapper_csv_likwid4_rendered.txt")
    )
    marker = parse_likwid(fixture_text(HASWELL_MARKER))
    assert wrapper.regions() == ("",)
    assert traffic_bytes(wrapper, "MEM") == traffic_bytes(
        marker, "MEM", "1D-MATVEC_Kernel-Degree-2"
    )


def test_a_group_without_the_volume_is_an_error_naming_what_was_read() -> None:
    knl = parse_likwid(
        fixture_text(D + "knl_xeonphi7250_hbm_cache_marker_csv_likwid5_16threads_with_STAT.txt")
    )
    with pytest.raises(BackendError, match=r"no Memory data volume.*HBM_CACHE"):
        traffic_bytes(knl, "MEM")
    haswell = parse_likwid(fixture_text(HASWELL_MARKER))
    with pytest.raises(BackendError, match="no L3 data volume"):
        traffic_bytes(haswell, "L3", "1D-MATVEC_Kernel-Degree-2")  # a MEM run has no L3 table
    with pytest.raises(BackendError, match="must be one of MEM, L3, L2"):
        traffic_bytes(haswell, "L1")


def _cache_tree(root: Path, caches: list[tuple[int, str, str]]) -> None:
    for n, (level, kind, size) in enumerate(caches):
        d = root / "cpu0" / "cache" / f"index{n}"
        d.mkdir(parents=True)
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")


def test_cache_sizes_from_sysfs_layout(tmp_path: Path) -> None:
    _cache_tree(tmp_path, [(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "2048K"),
                           (3, "Unified", "36M")])  # fmt: skip
    assert cache_bytes(1, root=tmp_path) == 48 * 1024  # the data cache, not the instruction one
    assert cache_bytes(2, root=tmp_path) == 2 << 20
    assert cache_bytes(None, root=tmp_path) == 36 << 20
    with pytest.raises(BackendError, match="level-4"):
        cache_bytes(4, root=tmp_path)


def test_this_hosts_caches_grow_with_level() -> None:
    if not Path("/sys/devices/system/cpu/cpu0/cache").is_dir():
        pytest.skip("no sysfs cache description on this host")
    assert 0 < cache_bytes(1) <= cache_bytes(None)


def test_cli_likwid_traffic_without_counters_is_one_line_exit_2() -> None:
    reason = _likwid_reason()
    if reason is None:
        pytest.skip("likwid-perfctr counts MEM here: the error path cannot be shown")
    result = CliRunner().invoke(
        main, ["bound", "matmul", "--measure", "gemm-c=64", "--traffic", "likwid"]
    )
    assert result.exit_code == 2
    assert f"--traffic likwid: {reason}" in result.output
    assert "| matmul |" not in result.output  # refused before anything was printed


@pytest.mark.likwid
def test_live_likwid_mem_traffic_is_at_least_the_bound() -> None:
    reason = _likwid_reason()
    if reason is not None:
        pytest.skip(f"no live likwid traffic: {reason}")
    from hpcprof.analysis.traffic import markdown, measure_likwid

    point = measure_likwid("gemm-c", 512, "MEM")  # 3 x 2 MiB of float64, beyond most LLC shares
    # any execution moves at least the bound, less what a warm or unflushed cache hides (2M)
    assert point.measured_words >= point.bound_words - 2 * point.memory
    assert point.source == "likwid MEM" and "| likwid MEM |" in markdown([point])
