"""Batch scoring on Ray Data (``plastispoof score ... --ray``): one machine's cores or a whole cluster's GPUs.

The pipeline is Ray Data's own: the file list (``read_parquet`` of a manifest, or ``from_items`` of files and
folders) -> ``map`` decoding each file in a Ray task -> ``map_batches`` with :class:`ScoreActor`, a callable class
holding one ``Detector`` / ``OnnxDetector``, run by an ``ActorPoolStrategy`` of ``actors`` actors (each with
``gpus_per_actor`` GPUs) -> ``write_parquet``. Every output row has the fields of ``score --json``
(:meth:`~plastispoof.results.ScoreResult.as_dict`, without ``segments``); a file that cannot be decoded is a row
with its ``error``, never a failed job. An actor that dies is restarted by Ray and its batches retried, so every
file is still scored exactly once.

``address``: ``local`` starts a Ray instance on this machine (the embedded default); ``auto`` joins the cluster
``ray start`` made here; ``HOST:PORT`` (or ``ray://HOST:PORT``) joins that cluster, after checking within
``connect_timeout`` seconds that something answers there.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from plastispoof.errors import InputError
from plastispoof.results import ScoreResult, expand_audio_paths

DECODE_CPUS = 0.5  # what one decoding task asks of Ray (decoding is light next to the model)
# Output columns: ScoreResult's fields but the per-window timeline (score --segments is per file, not for Parquet).
COLUMNS = tuple(f.name for f in fields(ScoreResult) if f.name != "segments")


@dataclass(frozen=True)
class DetectorSpec:
    """What a Ray actor needs to build its detector: the ``score`` verb's model options, as plain values."""

    run: str | None = None
    model: str | None = None
    weights: str | None = None
    onnx: str | None = None
    calibration: str | None = None
    precision: str = "float32"
    operating_point: str | None = None
    prior: float = 0.5


def load_detector(spec: DetectorSpec):
    """The detector ``score`` would build from these options (its run's or export's calibration by default)."""
    from plastispoof.detectors import load_detector as load

    return load(spec.run, spec.model, spec.weights, spec.onnx, spec.calibration, spec.precision)


def _schema():
    import pyarrow as pa

    kinds = {"score": pa.float64(), "llr": pa.float64(), "p_bonafide": pa.float64(), "prior": pa.float64(),
             "threshold": pa.float64(), "duration_s": pa.float64()}
    return pa.schema([(name, kinds.get(name, pa.string())) for name in COLUMNS])


def decode_row(row: dict[str, Any], sample_rate: int) -> dict[str, Any]:
    """One file decoded in a Ray task: its float32 samples as bytes, or the reason it cannot be."""
    from plastispoof.audio import load_audio

    wave, error = b"", row.get("problem") or ""
    if not error:
        try:
            wave = load_audio(row["path"], sample_rate).tobytes()
        except InputError as err:
            error = str(err)
    return {"path": row["path"], "wave": wave, "error": error}


class ScoreActor:
    """A Ray actor holding one detector; called on batches of decoded files, returns their result rows."""

    def __init__(self, spec: DetectorSpec):
        self.spec = spec
        self.detector = load_detector(spec)

    def __call__(self, batch: dict[str, np.ndarray]):
        import pyarrow as pa

        waves = dict(zip(batch["path"].tolist(), zip(batch["wave"].tolist(), batch["error"].tolist())))

        def load(path: str) -> np.ndarray:
            wave, error = waves[path]
            if error:
                raise InputError(error)
            return np.frombuffer(wave, dtype=np.float32)

        rows = [asdict(result) for result in self.detector.iter_results(
            list(waves), operating_point=self.spec.operating_point, prior=self.spec.prior, load=load)]
        return pa.Table.from_pylist([{name: row[name] for name in COLUMNS} for row in rows], schema=_schema())


@dataclass
class RayScoring:
    """What a Ray scoring job did."""

    out: Path
    files: int
    failed: int
    seconds: float
    actors: int
    address: str
    pipeline_seconds: float = 0.0  # from the first Ray Data call to the written output (Ray already up)


def connect(address: str, connect_timeout: float = 10.0, num_cpus: int | None = None) -> None:
    """Start (``local``) or join (``auto``, ``HOST:PORT``) a Ray instance; an address that does not answer is an
    :class:`InputError` after ``connect_timeout`` seconds."""
    import ray

    if ray.is_initialized():
        return
    if address == "local":
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        return
    if address != "auto":
        host, _, port = address.removeprefix("ray://").rpartition(":")
        if not host or not port.isdigit():
            raise InputError(f"--ray takes local, auto or HOST:PORT (e.g. 10.0.0.5:6379); got {address!r}")
        try:
            socket.create_connection((host, int(port)), timeout=connect_timeout).close()
        except OSError as err:
            raise InputError(f"no Ray cluster answers at {address} (waited up to {connect_timeout:g} s: {err}); "
                             "start one with `ray start --head` or score with --ray local") from None
    _probe(address, connect_timeout)
    ray.init(address=address, log_to_driver=False, configure_logging=False)


def _probe(address: str, connect_timeout: float) -> None:
    """Join the cluster once in a child process first: Ray ends the process that cannot reach its GCS (something
    else listening on the port, a cluster that died), and that must not be this one."""
    import subprocess
    import sys

    env = {**os.environ, "RAY_BACKEND_LOG_LEVEL": "fatal",
           "RAY_gcs_rpc_server_reconnect_timeout_s": str(max(1, int(connect_timeout)))}
    code = "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); ray.shutdown()"
    try:
        child = subprocess.run([sys.executable, "-c", code, address], capture_output=True, text=True, env=env,
                               timeout=connect_timeout + 30)  # + the time to import Ray
    except subprocess.TimeoutExpired:
        child = None
    if child is None or child.returncode != 0:
        reason = "no answer" if child is None else (child.stderr.strip().splitlines() or ["no Ray cluster"])[-1]
        raise InputError(f"no Ray cluster answers at {address} (waited up to {connect_timeout:g} s: "
                         f"{reason[:160]}); start one with `ray start --head` or score with --ray local")


def score_with_ray(inputs: list[str | Path], out: str | Path, spec: DetectorSpec, *, address: str = "local",
                   actors: int = 2, gpus_per_actor: float = 0.0, cpus_per_actor: float = 1.0,
                   batch_size: int | None = None, connect_timeout: float = 10.0,
                   num_cpus: int | None = None) -> RayScoring:
    """Score ``inputs`` (files, folders, or one ``.parquet`` manifest) on Ray Data into the Parquet folder ``out``.

    ``batch_size``: files per actor call (default 64). ``num_cpus``: CPUs of a ``local`` instance (default:
    enough for the actors plus one for decoding). See the module notes.
    """
    if actors < 1:
        raise InputError(f"--actors must be at least 1, got {actors}")
    if gpus_per_actor < 0 or cpus_per_actor <= 0:
        raise InputError("--gpus-per-actor must be 0 or more and the CPUs per actor more than 0")
    out = Path(out)
    if out.exists():
        raise InputError(f"{out} already exists; Ray writes a folder of Parquet files there: choose a new --out")
    # Everything the actors will need is checked here, before Ray starts: the options, the model, the
    # calibration and the operating point (iter_results refuses one that cannot be reached).
    detector = load_detector(spec)
    iter(detector.iter_results([], operating_point=spec.operating_point, prior=spec.prior, load=lambda p: None))
    sample_rate = detector.sample_rate
    del detector
    manifest = [Path(p) for p in inputs if Path(p).suffix.lower() == ".parquet"]
    items = None if len(inputs) == 1 and manifest else [
        {"path": str(path), "problem": problem or ""} for path, problem in expand_audio_paths(list(inputs))]
    if items is None:
        from plastispoof.data.manifest import read_manifest

        files = len(read_manifest(manifest[0]))  # refuses a stale manifest before the cluster is asked
    else:
        files = len(items)
    started = time.perf_counter()
    connect(address, connect_timeout,
            num_cpus if num_cpus is not None else max(os.cpu_count() or 1, int(np.ceil(actors * cpus_per_actor)) + 1))
    import ray

    try:
        import ray.data

        cpus = ray.cluster_resources().get("CPU", 0)
        if cpus < actors * cpus_per_actor + DECODE_CPUS:  # the actors would hold every CPU: decoding would starve
            raise InputError(f"{actors} actor(s) x {cpus_per_actor:g} CPU leave no CPU for decoding on a Ray "
                             f"cluster of {cpus:g} CPUs; use fewer actors or a bigger cluster")
        pipeline_started = time.perf_counter()
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = True
        dataset = (ray.data.read_parquet(str(manifest[0]), columns=["path"]) if items is None
                   else ray.data.from_items(items))
        decoded = dataset.map(decode_row, fn_kwargs={"sample_rate": sample_rate}, num_cpus=DECODE_CPUS)
        scored = decoded.map_batches(ScoreActor, fn_constructor_kwargs={"spec": spec}, batch_size=batch_size or 64,
                                     batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
                                     num_cpus=cpus_per_actor, num_gpus=gpus_per_actor or None)
        scored.write_parquet(str(out))
        pipeline_seconds = time.perf_counter() - pipeline_started
    finally:
        if address == "local":
            ray.shutdown()
    import pyarrow.parquet as pq

    errors = pq.read_table(out, columns=["error"]).column("error").to_pylist()
    if len(errors) != files:
        raise RuntimeError(f"Ray wrote {len(errors)} rows for {files} files")  # a bug, not bad input
    return RayScoring(out, files, sum(bool(e) for e in errors), time.perf_counter() - started, actors, address,
                      pipeline_seconds)


def format_ray_scoring(result: RayScoring) -> str:
    return (f"scored {result.files:,} files with {result.actors} Ray actor(s) ({result.address}) in "
            f"{result.seconds:.1f} s -> {result.out}" + (f"; {result.failed} could not be scored (rows with an "
                                                        "error)" if result.failed else ""))
