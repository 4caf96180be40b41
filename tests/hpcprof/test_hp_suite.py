"""Suite files: validation messages, and failing/hanging apps recorded while the suite goes on."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hpcprof.apps.external import load_suite
from hpcprof.backends.timer import TimerBackend
from hpcprof.errors import SuiteError
from hpcprof.results.records import Metric, RunStatus
from hpcprof.run.config import RunConfig
from hpcprof.run.host import collect_host
from hpcprof.run.runner import run_tasks, suite_tasks

EXAMPLE = Path(__file__).resolve().parents[2] / "hpcprof" / "suites" / "ecp_proxies.toml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_suite_loads() -> None:
    suite = load_suite(EXAMPLE)
    assert {a.name for a in suite.apps} >= {"xsbench", "hpcg", "comd"}
    hpcg = next(a for a in suite.apps if a.name == "hpcg")
    assert suite.command(hpcg, "short")[:3] == ["mpirun", "-np", "2"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (
            '[[app]]\nname = "a"\ncommand = "echo hi"\n',
            "'app 'a'.command' must be a non-empty list",
        ),
        ('[[app]]\nname = "a"\ncommand = ["x"]\ncolour = 1\n', "key 'colour' is not allowed"),
        (
            '[[app]]\nname = "a"\ncommand = ["x"]\nmpi_ranks = 0\n',
            "mpi_ranks' must be an integer >= 1",
        ),
        ('[[app]]\nname = "a"\ncommand = ["x"]\nfom_regex = "("\n', "'fom_regex' is not a regex"),
        ('[[app]]\ncommand = ["x"]\n', "app[0].name is required"),
        ("[suite]\nname = 'x'\n", "key 'app' must be a non-empty array"),
        ("[[app]\n", "not valid TOML"),
    ],
)
def test_malformed_suite_one_line_error(tmp_path: Path, body: str, needle: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert str(path) in message and needle in message
    assert "\n" not in message


def test_failing_and_hanging_apps_are_recorded(tmp_path: Path) -> None:
    py = sys.executable
    path = _write(
        tmp_path,
        f"""
[[app]]
name = "crash"
command = ["{py}", "-c", "import sys; sys.stderr.write('boom at step 3\\\\n'); sys.exit(3)"]

[[app]]
name = "hang"
command = ["{py}", "-c", "import time; time.sleep(60)"]
timeout_s = 1

[[app]]
name = "fine"
command = ["{py}", "-c", "print('rate: 12.5')"]
fom_regex = 'rate: ([0-9.]+)'
fom_unit = "items/s"
""",
    )
    config = RunConfig(repetitions=2, warmup=0, suite=str(path))
    results = run_tasks(suite_tasks(load_suite(path), config), TimerBackend(collect_host()), config)
    by_app = {}
    for m in results:
        by_app.setdefault(m.app, []).append(m)
    assert [m.status for m in by_app["crash"]] == [RunStatus.FAILED] * 2
    assert by_app["crash"][0].returncode == 3
    assert "boom at step 3" in by_app["crash"][0].stderr_tail
    hang = by_app["hang"]
    assert len(hang) == 1 and hang[0].status is RunStatus.TIMEOUT  # not retried
    wall = hang[0].value(Metric.WALL_S)
    assert wall is not None and wall < 30
    assert [m.status for m in by_app["fine"]] == [RunStatus.OK] * 2
    assert by_app["fine"][0].value(Metric.FOM) == 12.5
