"""The Parquet manifest ``plastispoof prepare`` writes: one row per utterance of a checked corpus.

Columns: ``path`` (absolute), ``utt_id``, ``label``, ``attack``, ``speaker``, ``subset``, ``duration`` (s) and
``sample_rate`` (null unless ``prepare --check-audio`` decoded the file), ``size`` (bytes), ``mtime_ns`` (the
file's modification time) and ``meta`` (the protocol's other columns, as JSON). The schema metadata
``plastispoof`` says which corpus and root it was made from.

Reading it is the ``manifest`` dataset (``--dataset manifest --root corpus.parquet``, or ``data.dataset:
manifest`` in a config): the corpus is not listed or parsed again, but every file is checked against the size
and modification time recorded, and a manifest older than its files is refused (rebuild it with ``prepare``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from plastispoof.data.trials import Trial
from plastispoof.errors import InputError, summarise
from plastispoof.fileio import atomic_path
from plastispoof.registry import DATASETS

MANIFEST_SUFFIX = ".parquet"
COLUMNS = ("path", "utt_id", "label", "attack", "speaker", "subset", "duration", "sample_rate", "size", "mtime_ns",
           "meta")
_METADATA_KEY = b"plastispoof"


@dataclass(frozen=True)
class FileStat:
    """What ``prepare`` records of one audio file (``duration``/``sample_rate`` only when it was decoded)."""

    size: int
    mtime_ns: int
    duration: float | None = None
    sample_rate: int | None = None


def _schema():
    import pyarrow as pa

    return pa.schema([("path", pa.string()), ("utt_id", pa.string()), ("label", pa.string()),
                      ("attack", pa.string()), ("speaker", pa.string()), ("subset", pa.string()),
                      ("duration", pa.float64()), ("sample_rate", pa.int32()), ("size", pa.int64()),
                      ("mtime_ns", pa.int64()), ("meta", pa.string())])


def write_manifest(path: str | Path, trials: Iterable[Trial], stats: dict[Path, FileStat],
                   info: dict[str, Any]) -> Path:
    """Write the manifest of ``trials`` (each with its :class:`FileStat` in ``stats``) atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    for trial in trials:
        stat = stats[trial.path]
        row = {"path": str(Path(trial.path).absolute()), "utt_id": trial.utt_id, "label": trial.label,
               "attack": trial.attack, "speaker": trial.speaker, "subset": trial.subset,
               "duration": stat.duration, "sample_rate": stat.sample_rate, "size": stat.size,
               "mtime_ns": stat.mtime_ns, "meta": json.dumps(trial.meta, sort_keys=True)}
        for name, value in row.items():
            columns[name].append(value)
    schema = _schema().with_metadata({_METADATA_KEY: json.dumps(info).encode()})
    table = pa.table(columns, schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def _read_table(path: Path):
    import pyarrow.parquet as pq

    if not path.is_file():
        raise InputError(f"manifest not found: {path}")
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises ArrowInvalid, OSError, ... for a file that is not Parquet
        raise InputError(f"{path} is not a readable Parquet manifest ({str(err).splitlines()[0]})") from None
    missing = [name for name in COLUMNS if name not in table.column_names]
    if missing or _METADATA_KEY not in (table.schema.metadata or {}):
        raise InputError(f"{path} is not a plastispoof manifest (no {', '.join(missing) or 'plastispoof'} "
                         "metadata); write one with plastispoof prepare")
    return table


def manifest_info(path: str | Path) -> dict[str, Any]:
    """The schema metadata of a manifest: ``dataset``, ``root``, ``subsets``, ``created``."""
    return json.loads(_read_table(Path(path)).schema.metadata[_METADATA_KEY])


def read_manifest(path: str | Path, subset: str = "all", *, check: bool = True) -> list[Trial]:
    """The trials of ``subset`` (``all``: every row) of a manifest, in its row order.

    With ``check`` every file must still have the size and modification time recorded: a manifest older than
    its files is an :class:`InputError` with the count and first examples.
    """
    path = Path(path)
    rows = _read_table(path).to_pylist()
    if subset != "all":
        chosen = [row for row in rows if row["subset"] == subset]
        if not chosen:
            present = sorted({row["subset"] for row in rows})
            raise InputError(f"manifest {path} has no rows of subset {subset!r}; it holds "
                             f"{', '.join(present)} (or all)")
        rows = chosen
    if check:
        check_fresh(path, rows)
    return [Trial(row["utt_id"], Path(row["path"]), row["label"], row["attack"], row["speaker"], row["subset"],
                  json.loads(row["meta"] or "{}")) for row in rows]


def check_fresh(path: Path, rows: list[dict[str, Any]]) -> None:
    """Refuse rows whose file is gone or changed since the manifest was written."""
    missing, changed = [], []
    for row in rows:
        try:
            stat = os.stat(row["path"])
        except OSError:
            missing.append(row["path"])
            continue
        if stat.st_size != row["size"] or stat.st_mtime_ns != row["mtime_ns"]:
            changed.append(row["path"])
    if missing or changed:
        parts = ([summarise(missing, "file(s) gone")] if missing else []) + \
                ([summarise(changed, "file(s) changed (size or modification time)")] if changed else [])
        raise InputError(f"manifest {path} is stale: {'; '.join(parts)}; rebuild it with plastispoof prepare")


def manifest_paths(path: str | Path) -> list[Path]:
    """Every file a manifest lists, checked fresh (what ``score`` reads from a ``.parquet`` argument)."""
    return [trial.path for trial in read_manifest(path)]


@DATASETS.register("manifest")
def read_manifest_dataset(root: Path, subset: str) -> list[Trial]:
    """A manifest written by ``plastispoof prepare``: ``root`` is the ``.parquet`` file; ``subset`` picks rows by
    their subset column (``all``: every row). Files changed since it was written are refused."""
    return read_manifest(root, subset)
