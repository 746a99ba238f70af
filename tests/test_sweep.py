"""``llmstab sweep``: the grid, one point, and the executor (serial, LocalCluster, a running scheduler)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from llmstab.checkers.cli.main import main
from llmstab.checkers.errors import InputError
from llmstab.checkers.spec import load_document
from llmstab.checkers.sweep import (RECORD_FIELDS, SweepExecutor, SweepPoint, _prepared, evaluate_point, grid_points,
                                    parse_loads, parse_seeds, sweep, warm_up_for)
from tests.conftest import EXAMPLES

EXAMPLE = EXAMPLES / "codellama34b_a100_sarathi.yaml"
DOC = load_document(EXAMPLE)
TINY = grid_points(parse_loads("0.8,1.2"), ["sarathi", "vllm"], [0, 1])  # 8 points, 60 simulated seconds each
HORIZON = 60.0


# --- the grid ----------------------------------------------------------------------------------


@settings(max_examples=60)
@given(start=st.integers(1, 200), count=st.integers(1, 40), step=st.integers(1, 50), den=st.sampled_from([1, 10, 7]))
def test_load_ranges_are_exact(start, count, step, den):
    """START:STOP:STEP hits STOP exactly when it lies on the grid, in equal exact steps, and stops there."""
    a, h = sympy.Rational(start, den), sympy.Rational(step, den)
    stop = a + (count - 1) * h
    loads = parse_loads(f"{a}:{stop}:{h}")
    assert len(loads) == count and loads[0] == a and loads[-1] == stop
    assert all(y - x == h for x, y in zip(loads, loads[1:]))
    assert parse_loads(f"{a}:{stop + h / 2}:{h}") == loads  # a STOP between grid points is not passed


def test_issue_grid_has_eleven_loads_ending_at_one():
    loads = parse_loads("0.5:1.0:0.05")
    assert len(loads) == 11 and loads[-1] == 1 and loads[1] == sympy.Rational(11, 20)


@pytest.mark.parametrize("text, words", [("1.0:0.5:0.05", "empty grid"), ("0.5:1:0", "step must be positive"),
                                         ("a:b:c", "not a number"), ("0,-1", "positive"), ("", "no load")])
def test_bad_loads(text, words):
    with pytest.raises(InputError, match=words):
        parse_loads(text)


@pytest.mark.parametrize("text", ["", "3-1", "x", "-2"])
def test_bad_seeds(text):
    with pytest.raises(InputError) as err:
        parse_seeds(text)
    assert err.value.field == "--seeds"


def test_grid_order_and_size():
    points = grid_points(parse_loads("0.5,1"), ["a", "b"], [0, 1, 2], ["p", "q"])
    assert len(points) == 24 and points[0] == SweepPoint("a", "1/2", 0, "p") and points[-1] == SweepPoint("b", "1", 2, "q")
    with pytest.raises(InputError, match="empty grid"):
        grid_points([], ["a"], [0])


# --- one point ---------------------------------------------------------------------------------


def test_point_is_a_pure_function_of_its_arguments():
    point = SweepPoint("sarathi", "9/10", 3)
    first = evaluate_point(DOC, point, horizon_s=HORIZON)
    _prepared.cache_clear()
    assert evaluate_point(DOC, point, horizon_s=HORIZON) == first
    assert set(first) == set(RECORD_FIELDS) and first["seed"] == 3 and first["llmstab_version"]
    assert abs(first["offered_tokens_per_s"] - 0.9 * first["capacity_tokens_per_s"]) < 1e-9
    other = evaluate_point(DOC, SweepPoint("sarathi", "9/10", 4), horizon_s=HORIZON)
    assert other["throughput_tokens_per_s"] != first["throughput_tokens_per_s"]  # the seed matters


def test_point_verdicts_follow_theorem_2():
    """Above capacity every policy is unstable (exact) and its backlog grows; below it a work-conserving
    policy is stable (exact) while vLLM, not work-conserving, gets no exact verdict."""
    over = evaluate_point(DOC, SweepPoint("vllm", "6/5", 0), horizon_s=HORIZON)
    assert over["verdict"] == "unstable" and over["growth"] == "diverging" and over["growth_rate_tokens_per_s"] > 0
    under = evaluate_point(DOC, SweepPoint("sarathi", "1/2", 0), kind="theory")
    assert under["verdict"] == "stable" and "certificate" in under["verdict_evidence"] and under["growth"] is None
    assert evaluate_point(DOC, SweepPoint("vllm", "1/2", 0), kind="theory")["verdict"] == "inconclusive"


def test_point_input_errors():
    with pytest.raises(InputError, match="unknown policy"):
        evaluate_point(DOC, SweepPoint("nope", "1/2", 0), kind="theory")
    with pytest.raises(InputError, match="no-such-preset") as err:
        evaluate_point(DOC, SweepPoint("sarathi", "1/2", 0, "no-such-preset"), kind="theory")
    assert err.value.field.startswith("engine.batch_time")
    with pytest.raises(InputError) as err:
        evaluate_point(DOC, SweepPoint("sarathi", "1/2", 0), kind="exact")
    assert err.value.field == "--kind"


# --- executors ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def serial_records():
    with SweepExecutor() as serial:
        return sweep(DOC, TINY, serial, horizon_s=HORIZON)


@pytest.fixture(scope="module")
def local_cluster():
    with SweepExecutor(workers=2, warm_up=warm_up_for(DOC, ["sarathi", "vllm"], [None], str(EXAMPLES))) as ex:
        yield ex


def test_local_cluster_matches_serial_point_for_point(serial_records, local_cluster):
    assert local_cluster.n_workers == 2
    assert sweep(DOC, TINY, local_cluster, horizon_s=HORIZON) == serial_records


def test_chunked_theory_points_match_serial(local_cluster):
    points = grid_points(parse_loads("0.1:1.3:0.1"), ["sarathi", "orca", "vllm"], [0])
    with SweepExecutor() as serial:
        expected = sweep(DOC, points, serial, kind="theory")
    assert sweep(DOC, points, local_cluster, kind="theory") == expected
    assert {r["verdict"] for r in expected} == {"stable", "unstable", "inconclusive"}


def test_workers_are_warmed_up_before_any_task(local_cluster):
    """The start-up hook parsed the document and loaded both kernels on every worker."""
    sizes = local_cluster.client.run(lambda: _prepared.cache_info().currsize)
    assert len(sizes) == 2 and all(n >= 2 for n in sizes.values())


def test_input_error_in_a_worker_comes_back_as_input_error(local_cluster):
    points = grid_points(parse_loads("0.5"), ["sarathi"], [0], ["no-such-preset"])
    with pytest.raises(InputError, match="no-such-preset") as err:
        sweep(DOC, points, local_cluster, kind="theory")
    assert err.value.field.startswith("engine.batch_time")


def test_zero_workers_is_bad_input():
    with pytest.raises(InputError, match="positive integer"):
        SweepExecutor(workers=0)


# --- the CLI, in subprocesses --------------------------------------------------------------------


def _cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmstab.checkers.cli.main", "sweep", *args], capture_output=True,
                          text=True, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args, field", [
    (["--loads", "1.0:0.5:0.1"], "--loads"),
    (["--loads", "0.5", "--workers", "0"], "--workers"),
    (["--loads", "0.5", "--policies", ","], "--policies"),
    (["--loads", "0.5", "--policies", "nope"], "policy"),
])
def test_cli_bad_input_is_one_line_exit_2(args, field, capsys):
    """In-process (the import floor is the subprocess tests' business): no cluster is started."""
    start = time.perf_counter()
    assert main(["sweep", str(EXAMPLE), *args, "--no-progress"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1 and out.err.startswith(f"llmstab: error: {field}")
    assert time.perf_counter() - start < 5


def test_cli_unreachable_scheduler_is_one_line_exit_2():
    out = _cli(str(EXAMPLE), "--loads", "0.5", "--scheduler", f"tcp://127.0.0.1:{_free_port()}",
               "--connect-timeout", "2", "--no-progress")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert out.stderr.startswith("llmstab: error: --scheduler: cannot reach the Dask scheduler")


def test_unreachable_scheduler_fails_within_the_connect_timeout():
    """Timed in-process: a subprocess's wall time is mostly the import floor, which a busy machine stretches."""
    start = time.perf_counter()
    with pytest.raises(InputError, match="cannot reach"):
        SweepExecutor(scheduler=f"tcp://127.0.0.1:{_free_port()}", connect_timeout=2)
    assert time.perf_counter() - start < 10


@contextmanager
def _dask_scheduler_with_one_worker():
    """``dask scheduler`` and ``dask worker`` (one process, one thread) on 127.0.0.1, stopped on exit."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                       "--nworkers", "1", "--no-dashboard", "--host", "127.0.0.1"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def test_cli_through_a_running_scheduler_matches_serial(tmp_path):
    args = [str(EXAMPLE), "--loads", "0.9,1.1", "--policies", "sarathi,vllm", "--seeds", "0", "--horizon", "60",
            "--json", "--no-progress"]
    serial = _cli(*args, "--serial", "--out", str(tmp_path / "serial.csv"))
    assert serial.returncode == 0, serial.stderr
    with _dask_scheduler_with_one_worker() as address:
        remote = _cli(*args, "--scheduler", address, "--connect-timeout", "60", "--out", str(tmp_path / "remote.csv"))
    assert remote.returncode == 0, remote.stderr
    records = json.loads(remote.stdout)["points"]
    assert records == json.loads(serial.stdout)["points"] and len(records) == 4
    assert (tmp_path / "remote.csv").read_text() == (tmp_path / "serial.csv").read_text()
    assert [r["verdict"] for r in records] == ["stable", "unstable", "inconclusive", "unstable"]


def test_cli_presets_plot_and_csv_in_process(tmp_path, capsys):
    """A preset replaces the file's batch time (this one is the same Li-Dai-Peng staircase, so the same
    capacity); the CSV has one row per point; the plot is a PNG."""
    plot, table = tmp_path / "sweep.png", tmp_path / "sweep.csv"
    assert main(["sweep", str(EXAMPLE), "--loads", "0.5,1.2", "--kind", "theory", "--serial", "--no-progress",
                 "--presets", "li-dai-peng-codellama34b-a100", "--plot", str(plot), "--out", str(table), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)["points"]
    assert [(r["preset"], r["load_exact"], r["verdict"]) for r in records] == [
        ("li-dai-peng-codellama34b-a100", "1/2", "stable"), ("li-dai-peng-codellama34b-a100", "6/5", "unstable")]
    assert records[0]["capacity_tokens_per_s"] == evaluate_point(DOC, SweepPoint(None, "1/2", 0), kind="theory")[
        "capacity_tokens_per_s"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = table.read_text().splitlines()
    assert lines[0].split(",") == list(RECORD_FIELDS) and len(lines) == 3


def test_a_port_that_is_not_a_dask_scheduler_is_bad_input():
    """Something listens on 127.0.0.1 but speaks no Dask: one InputError, no Client left behind."""
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer_garbage() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n" + b"\xff" * 64)

    threading.Thread(target=answer_garbage, daemon=True).start()
    try:
        start = time.perf_counter()
        with pytest.raises(InputError) as err:
            SweepExecutor(scheduler=f"tcp://127.0.0.1:{server.getsockname()[1]}", connect_timeout=2)
        assert err.value.field == "--scheduler" and time.perf_counter() - start < 10
    finally:
        server.close()
    with pytest.raises(InputError, match="not a Dask scheduler address"):
        SweepExecutor(scheduler="localhost")
