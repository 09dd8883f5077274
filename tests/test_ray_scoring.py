"""score --ray: Ray Data scoring on a local Ray instance of 2 actors equals single-process scoring; bad files are
rows with an error; an address that does not answer is one line and exit 2; a killed actor loses no file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from tiny_run import grnn_config, write_tiny_corpus

from plastispoof.errors import InputError
from plastispoof.inference import Detector
from plastispoof.scale.ray_scoring import COLUMNS, DetectorSpec, score_with_ray
from plastispoof.training import train

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def scored_setup(tmp_path_factory):
    """A trained GRNN run (a built-in model, so Ray workers can rebuild it) and a folder of eval files with one
    corrupt file among them."""
    tmp = tmp_path_factory.mktemp("ray")
    corpus = write_tiny_corpus(tmp / "corpus", {"train": (8, 8), "dev": (6, 6), "eval": (20, 20)}, seconds=0.4)
    run = train(grnn_config(tmp / "runs", corpus))
    folder = corpus / "LA" / "ASVspoof2019_LA_eval" / "flac"
    (folder / "zz_broken.flac").write_bytes(b"not audio at all")
    return run, folder


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rows(out: Path) -> list[dict]:
    return sorted(pq.read_table(out).to_pylist(), key=lambda row: row["path"])


def test_two_ray_actors_score_as_one_process_does(scored_setup, tmp_path):
    run, folder = scored_setup
    detector = Detector.from_run(run)
    expected = sorted((r.as_dict() for r in detector.iter_results([folder])), key=lambda row: row["path"])
    result = score_with_ray([folder], tmp_path / "scores.parquet", DetectorSpec(run=str(run)), address="local",
                            actors=2, cpus_per_actor=0.5, batch_size=8, num_cpus=2)
    rows = _rows(tmp_path / "scores.parquet")
    assert result.files == 41 and result.failed == 1 and len(rows) == 41
    assert [row["path"] for row in rows] == [row["path"] for row in expected]
    assert set(rows[0]) == set(COLUMNS) == set(expected[0]) - {"segments"}
    good = [i for i, row in enumerate(expected) if not row["error"]]
    np.testing.assert_allclose([rows[i]["score"] for i in good], [expected[i]["score"] for i in good],
                               rtol=1e-6, atol=1e-6)  # float32 rounding: windows batched differently
    for key in ("decision", "threshold", "duration_s", "model", "model_hash", "precision", "operating_point"):
        assert [rows[i][key] for i in good] == [expected[i][key] for i in good], key
    broken = rows[-1]
    assert broken["path"].endswith("zz_broken.flac") and broken["score"] is None
    assert broken["error"] == expected[-1]["error"] and "cannot decode" in broken["error"]


def test_an_address_that_does_not_answer_is_one_line_and_exit_2(scored_setup, tmp_path):
    run, folder = scored_setup
    started = time.perf_counter()
    with pytest.raises(InputError, match=r"no Ray cluster answers at 127\.0\.0\.1:\d+ \(waited up to 1 s"):
        score_with_ray([folder], tmp_path / "s.parquet", DetectorSpec(run=str(run)),
                       address=f"127.0.0.1:{_free_port()}", connect_timeout=1)
    assert time.perf_counter() - started < 30
    with pytest.raises(InputError, match=r"2 actor\(s\) x 1 CPU leave no CPU for decoding on a Ray cluster of 2 CPUs"):
        score_with_ray([folder], tmp_path / "s.parquet", DetectorSpec(run=str(run)), actors=2, num_cpus=2)
    # Something listens there but it is not Ray: a time limit, then one line (Ray itself would end the process).
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        env = {**os.environ, "PYTHONPATH": SRC}
        result = subprocess.run([sys.executable, "-m", "plastispoof.cli", "score", str(folder), "--run", str(run),
                                 "--ray", address, "--out", str(tmp_path / "s.parquet")],
                                capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: no Ray cluster answers at {address} (waited up to 10 s")
    assert not (tmp_path / "s.parquet").exists()


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _descends_from_us(pid: int) -> bool:
    """Whether ``pid`` is below this test process (the local Ray instance it started), not another's Ray."""
    for _ in range(16):
        pid = _parent(pid)
        if pid == os.getpid():
            return True
        if pid <= 1:
            return False
    return False


def _score_actor_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"ScoreActor" in (entry / "cmdline").read_bytes() and _descends_from_us(int(entry.name)):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_a_killed_actor_loses_no_file_and_scores_none_twice(scored_setup, tmp_path):
    run, folder = scored_setup
    many = tmp_path / "many"
    many.mkdir()
    files = sorted(folder.glob("LA_*.flac"))
    for i in range(240):  # enough batches that the kill lands while the actors are busy
        os.link(files[i % len(files)], many / f"{i:04d}.flac")
    killed: list[int] = []

    def kill_one_actor() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            pids = _score_actor_pids()
            if pids:
                time.sleep(1.0)  # let it load its model and take batches
                pid = _score_actor_pids()[0] if _score_actor_pids() else None
                if pid:
                    os.kill(pid, signal.SIGKILL)  # one of the Ray actor processes this test started
                    killed.append(pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_actor, daemon=True)
    killer.start()
    result = score_with_ray([many], tmp_path / "s.parquet", DetectorSpec(run=str(run)), address="local",
                            actors=2, cpus_per_actor=0.5, batch_size=2, num_cpus=2)
    killer.join(timeout=5)
    assert killed, "no actor was seen to kill"
    rows = pq.read_table(tmp_path / "s.parquet").to_pylist()
    paths = [row["path"] for row in rows]
    assert result.files == 240 and len(paths) == 240 and sorted(set(paths)) == sorted(str(p) for p in many.iterdir())
    assert all(row["error"] is None and row["score"] is not None for row in rows)


def test_the_score_verb_on_ray_writes_the_rows_and_exits_2_for_a_bad_file(scored_setup, tmp_path):
    run, folder = scored_setup
    env = {**os.environ, "PYTHONPATH": SRC}
    out = tmp_path / "scores.parquet"
    result = subprocess.run([sys.executable, "-m", "plastispoof.cli", "score", str(folder), "--run", str(run),
                             "--ray", "local", "--out", str(out), "--actors", "1", "--batch-size", "16"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stdout.startswith("scored 41 files with 1 Ray actor(s) (local) in ")
    assert result.stdout.rstrip().endswith("; 1 could not be scored (rows with an error)")
    rows = _rows(out)
    assert len(rows) == 41 and [row["path"] for row in rows if row["error"]] == [str(folder / "zz_broken.flac")]
