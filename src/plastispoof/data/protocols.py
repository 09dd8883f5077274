"""Readers that turn every supported corpus into a list of :class:`Trial`.

Two layers. :func:`read_protocol_file` parses one protocol / keys file of a known format (``asvspoof2019``,
``asvspoof2021``, ``asvspoof5``, ``in-the-wild``, ``csv``), with no audio needed — the metrics command uses it.
Dataset readers, registered by name in :data:`plastispoof.registry.DATASETS`, know where each corpus keeps its
protocols and audio; :func:`read_dataset` runs one and checks that every audio file exists. Line shapes and
their traps are documented in ``docs/formats.md``.

Every problem in a file is collected before raising, so one :class:`InputError` names the file, how many lines
are bad and the first few line numbers.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator

from plastispoof.data.trials import BONAFIDE, SPOOF, Trial
from plastispoof.errors import InputError, summarise
from plastispoof.registry import DATASETS

KEYS = (BONAFIDE, SPOOF)
UNKNOWN_ATTACK = "unknown"  # spoof attack of corpora that do not name their attacks (FoR, In-the-Wild, CSV)
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")

# Labels accepted in CSV files (case-insensitive), as documented in docs/formats.md.
_CSV_LABELS = {"bonafide": BONAFIDE, "bona-fide": BONAFIDE, "real": BONAFIDE, "genuine": BONAFIDE,
               "1": BONAFIDE, "spoof": SPOOF, "fake": SPOOF, "0": SPOOF}

Reader = Callable[[Path, str], list[Trial]]


class _BadLine(Exception):
    """One protocol line does not have its format's shape; the message says why."""


# --------------------------------------------------------------------------------------------------------------
# One protocol file


def read_protocol_file(path: str | os.PathLike, format: str = "auto", *,
                       audio_dir: str | os.PathLike | None = None) -> list[Trial]:
    """Parse one protocol / keys file into trials, without touching audio.

    ``format`` is one of :data:`PROTOCOL_FORMATS` or ``"auto"`` (told from the first line). Audio paths are
    resolved against ``audio_dir`` (default: the file's folder): ``<audio_dir>/<utt>.flac`` for the ASVspoof
    formats, ``<audio_dir>/<file column>`` for In-the-Wild and CSV.
    """
    path = Path(path)
    text = _read_text(path)
    if format == "auto":
        format = detect_format(path, text)
    if format not in _FORMATS:
        raise InputError(f"unknown protocol format {format!r}; known: {', '.join(PROTOCOL_FORMATS)}")
    spec = _FORMATS[format]
    return _collect(path, spec.records(path, text), spec.parse, Path(audio_dir) if audio_dir else path.parent)


def detect_format(path: Path, text: str) -> str:
    """Name of the protocol format of ``text`` (the content of ``path``), told from its first non-blank line."""
    first = next((line for line in text.split("\n") if line.strip()), None)
    if first is None:
        raise InputError(f"protocol file {path} is empty")
    if "," in first:
        header = {name.strip().lower() for name in next(csv.reader([first]), [])}
        if {"path", "label"} <= header:
            return "csv"
        if {"file", "label"} <= header:
            return "in-the-wild"
    tokens = first.split()
    if len(tokens) == 5 and tokens[4] in KEYS:
        return "asvspoof2019"
    if (len(tokens) == 10 and tokens[8] in KEYS) or (len(tokens) == 6 and tokens[5] in KEYS):
        return "asvspoof5"
    if len(tokens) >= 8 and _key_column(tokens) is not None:
        return "asvspoof2021"
    raise InputError(f"cannot tell the protocol format of {path} from its first line {first[:80]!r}; "
                     f"pass the format, one of: {', '.join(PROTOCOL_FORMATS)}")


def _read_text(path: Path) -> str:
    try:
        # utf-8-sig drops a byte-order mark; text mode turns \r\n (and lone \r) into \n.
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"protocol file not found: {path}") from None
    except UnicodeDecodeError as err:
        raise InputError(f"protocol file {path} is not UTF-8 text (bad byte at offset {err.start})") from None
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read protocol file {path}: {err}") from None


def _collect(path: Path, records: Iterable[tuple[int, object]],
             parse: Callable[[object, Path], Trial], audio_dir: Path) -> list[Trial]:
    """Parse numbered records (a record may already be a :class:`_BadLine`), gathering every bad line and
    duplicate id before raising once."""
    trials: list[Trial] = []
    problems: list[str] = []
    first_seen: dict[str, int] = {}
    try:
        for number, record in records:
            try:
                if isinstance(record, _BadLine):  # the record reader could not even form this record
                    raise record
                trial = parse(record, audio_dir)
            except _BadLine as err:
                problems.append(f"line {number}: {err}")
                continue
            if trial.utt_id in first_seen:
                problems.append(f"line {number}: duplicate utt id {trial.utt_id!r} (first on line "
                                f"{first_seen[trial.utt_id]})")
                continue
            first_seen[trial.utt_id] = number
            trials.append(trial)
    except _BadLine as err:  # the record reader itself cannot go on (broken CSV quoting)
        problems.append(str(err))
    if problems:
        raise InputError(f"{path}: {summarise(problems, 'bad protocol line(s)')}")
    if not trials:
        raise InputError(f"protocol file {path} holds no trials")
    return trials


def _whitespace_records(path: Path, text: str) -> Iterator[tuple[int, list[str]]]:
    for number, line in enumerate(text.split("\n"), start=1):
        tokens = line.split()
        if tokens:
            yield number, tokens


def _csv_records(path: Path, text: str, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows as {lower-case column: cell}; the header must hold the ``required`` columns."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = [name.strip().lower() for name in next(reader, [])]
        missing = [name for name in required if name not in header]
        if missing:
            raise InputError(f"CSV file {path} has no {', '.join(missing)} column in its header {header[:8]}; "
                             f"expected {','.join(required)}")
        if len(set(header)) != len(header):
            raise InputError(f"CSV file {path} repeats a column name in its header {header}")
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                yield reader.line_num, _BadLine(f"expected {len(header)} fields, got {len(row)}")
            else:
                yield reader.line_num, dict(zip(header, row))
    except csv.Error as err:
        raise _BadLine(f"line {reader.line_num}: {err}") from None


@dataclass(frozen=True)
class _Format:
    records: Callable[[Path, str], Iterable[tuple[int, object]]]
    parse: Callable[[object, Path], Trial]


# --------------------------------------------------------------------------------------------------------------
# Row parsers: one record -> one Trial (or _BadLine)


def _check_key(key: str) -> str:
    if key not in KEYS:
        raise _BadLine(f"unknown key {key!r} (expected bonafide or spoof)")
    return key


def _attack(label: str, attack: str) -> str:
    return "-" if label == BONAFIDE else attack


def _asvspoof2019_row(tokens: list[str], audio_dir: Path) -> Trial:
    """``speaker utt environment attack key``; environment is '-' in LA, the room/T60/distance id in PA."""
    if len(tokens) != 5:
        raise _BadLine(f"expected 5 columns (speaker utt - attack key), got {len(tokens)}")
    speaker, utt, environment, attack, key = tokens
    label = _check_key(key)
    meta = {"environment": environment} if environment != "-" else {}
    return Trial(utt, audio_dir / f"{utt}.flac", label, _attack(label, attack), speaker, meta=meta)


def _key_column(tokens: list[str]) -> int | None:
    """Index of the key in an ASVspoof 2021 line, found by value.

    Bona fide lines carry 'bonafide' in the attack column too (``... bonafide bonafide notrim eval``), so the
    key is the last token of the first run of key words after the speaker and utterance columns.
    """
    start = next((i for i in range(3, len(tokens)) if tokens[i] in KEYS), None)
    if start is None:
        return None
    end = start
    while end + 1 < len(tokens) and tokens[end + 1] in KEYS:
        end += 1
    return end


def _asvspoof2021_row(tokens: list[str], audio_dir: Path) -> Trial:
    """``speaker utt codec transmission attack key trim subset [DF: vocoder ...]``."""
    key_at = _key_column(tokens)
    if key_at is None:
        raise _BadLine("no 'bonafide' or 'spoof' key column")
    if len(tokens) < key_at + 3:
        raise _BadLine("expected trim and subset columns after the key")
    speaker, utt = tokens[:2]
    label = tokens[key_at]
    conditions = tokens[2:key_at - 1]
    # Column 4 is the LA transmission channel but the DF source corpus (asvspoof, vcc2018, vcc2020).
    names = ["codec", "source" if utt.startswith("DF_") else "transmission"]
    if len(conditions) != len(names):
        names = [f"column{i + 1}" for i in range(2, key_at - 1)]
    meta = dict(zip(names, conditions))
    meta["trim"] = tokens[key_at + 1]
    extras = tokens[key_at + 3:]
    meta.update(zip(["vocoder"] + [f"column{i + 1}" for i in range(key_at + 4, len(tokens))], extras))
    return Trial(utt, audio_dir / f"{utt}.flac", label, _attack(label, tokens[key_at - 1]), speaker,
                 tokens[key_at + 2], meta)


_ASVSPOOF5_META = ("gender", "codec", "codec_q", "codec_seed", "attack_tag")


def _asvspoof5_row(tokens: list[str], audio_dir: Path) -> Trial:
    """10 columns ``SPEAKER FILE GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY TMP``, or the
    early 6-column ``SPEAKER FILE GENDER CODEC ATTACK KEY``."""
    if len(tokens) == 10:
        speaker, utt, *conditions, attack, key, tmp = tokens
        meta = dict(zip(_ASVSPOOF5_META, conditions), tmp=tmp)
    elif len(tokens) == 6:
        speaker, utt, gender, codec, attack, key = tokens
        meta = {"gender": gender, "codec": codec}
    else:
        raise _BadLine(f"expected 10 columns (or the early 6), got {len(tokens)}")
    label = _check_key(key)
    return Trial(utt, audio_dir / f"{utt}.flac", label, _attack(label, attack), speaker, meta=meta)


def _csv_label(text: str) -> str:
    label = _CSV_LABELS.get(text.strip().lower())
    if label is None:
        raise _BadLine(f"unknown label {text!r} (expected one of {', '.join(_CSV_LABELS)})")
    return label


def _csv_row(row: dict[str, str], audio_dir: Path, path_column: str) -> Trial:
    """A CSV row; the path column (as written) is the utt id, other unnamed columns go to ``meta``."""
    name = row[path_column].strip()
    if not name:
        raise _BadLine(f"empty {path_column} field")
    label = _csv_label(row["label"])
    attack = row.get("attack", "").strip() or UNKNOWN_ATTACK
    known = {path_column, "label", "attack", "speaker", "subset"}
    meta = {column: value for column, value in row.items() if column not in known}
    return Trial(name, audio_dir / name, label, _attack(label, attack), row.get("speaker", "").strip(),
                 row.get("subset", "").strip(), meta)


_FORMATS: dict[str, _Format] = {
    "asvspoof2019": _Format(_whitespace_records, _asvspoof2019_row),
    "asvspoof2021": _Format(_whitespace_records, _asvspoof2021_row),
    "asvspoof5": _Format(_whitespace_records, _asvspoof5_row),
    "in-the-wild": _Format(partial(_csv_records, required=("file", "label")), partial(_csv_row, path_column="file")),
    "csv": _Format(partial(_csv_records, required=("path", "label")), partial(_csv_row, path_column="path")),
}
PROTOCOL_FORMATS = tuple(_FORMATS)


# --------------------------------------------------------------------------------------------------------------
# Datasets: where each corpus keeps protocols and audio


def read_dataset(name: str, root: str | os.PathLike, subset: str, *, check_audio: bool = True) -> list[Trial]:
    """Trials of ``subset`` of the corpus ``name`` under ``root``; with ``check_audio``, every file must exist."""
    # This module registered every built-in reader already; loading the other built-ins (models, methods) is
    # only needed to list the known names in the error.
    reader: Reader = DATASETS[name] if name in DATASETS else DATASETS.get_or_fail(name)
    root = Path(root)
    if not root.exists():
        raise InputError(f"dataset root not found: {root}")
    try:
        trials = reader(root, subset)
    except InputError as err:
        other = looks_like(root, exclude=name)
        if other is None:
            raise
        raise InputError(f"{err}; {root} looks like {other[0]} instead (found {other[1]})") from None
    if check_audio:
        missing = [str(trial.path) for trial in trials if not trial.path.is_file()]
        if missing:
            raise InputError(summarise(missing, f"missing audio file(s) for {name} {subset} under {root}"))
    return trials


def _choose_subset(dataset: str, subset: str, aliases: dict[str, str]) -> str:
    if subset not in aliases:
        raise InputError(f"unknown subset {subset!r} for {dataset}; choose from {', '.join(aliases)}")
    return aliases[subset]


def _first_existing(candidates: list[Path], what: str) -> Path:
    found = next((path for path in candidates if path.exists()), None)
    if found is None:
        raise InputError(f"{what} not found; looked for {', '.join(str(path) for path in candidates)}")
    return found


# What each corpus leaves on disk, relative to its root or one or two folders below (unpacked archives nest).
CORPUS_SIGNATURES: dict[str, tuple[str, ...]] = {
    "asv19-la": ("ASVspoof2019_LA_cm_protocols",),
    "asv19-pa": ("ASVspoof2019_PA_cm_protocols",),
    "asv21-la": ("keys/LA/CM/trial_metadata.txt", "ASVspoof2021_LA_eval"),
    "asv21-df": ("keys/DF/CM/trial_metadata.txt", "ASVspoof2021_DF_eval"),
    "asv5": ("ASVspoof5.train.tsv", "ASVspoof5.dev.track_1.tsv", "ASVspoof5.train.metadata.txt", "flac_T"),
    "in-the-wild": ("release_in_the_wild/meta.csv",),
    "for-original": ("for-original",), "for-norm": ("for-norm",), "for-2sec": ("for-2sec", "for-2seconds"),
    "for-rerec": ("for-rerec", "for-rerecorded"),
    "csv": ("protocol.csv",),
}


def looks_like(root: str | os.PathLike, exclude: str | None = None) -> tuple[str, str] | None:
    """``(corpus name, the path that says so)`` of the first known corpus whose files are under ``root`` (at
    most two folders down), other than ``exclude`` (and the corpora that share its layout); None if none is."""
    root = Path(root)
    same = {"asv19-la", exclude} if exclude == "synthetic" else {exclude}  # the embedded corpus is in LA layout
    for name, marks in CORPUS_SIGNATURES.items():
        if name in same:
            continue
        for mark in marks:
            for prefix in ("", "*/", "*/*/"):
                found = next(iter(root.glob(prefix + mark)), None)
                if found is not None:
                    return name, str(found)
    return None


def _with_subset(trials: list[Trial], subset: str) -> list[Trial]:
    return [replace(trial, subset=subset) for trial in trials]


def _asvspoof2019_reader(access: str) -> Reader:
    """Reader of ASVspoof 2019 ``access`` ('LA' or 'PA'); root holds ``<access>/`` (or is that folder)."""
    dataset = f"asv19-{access.lower()}"

    def read(root: Path, subset: str) -> list[Trial]:
        subset = _choose_subset(dataset, subset, {"train": "train", "dev": "dev", "eval": "eval"})
        protocols = f"ASVspoof2019_{access}_cm_protocols"
        # LA.zip unpacks to LA/; unpacked into a folder of the same name it becomes LA/LA/.
        base = next((b for b in (root / access, root / access / access, root) if (b / protocols).is_dir()),
                    root / access if (root / access).is_dir() else root)
        suffix = "trn" if subset == "train" else "trl"
        protocol = base / protocols / f"ASVspoof2019.{access}.cm.{subset}.{suffix}.txt"
        audio_dir = base / f"ASVspoof2019_{access}_{subset}" / "flac"
        if not audio_dir.is_dir() and audio_dir.parent.is_dir():  # the files straight in the subset folder
            audio_dir = audio_dir.parent
        return _with_subset(read_protocol_file(protocol, "asvspoof2019", audio_dir=audio_dir), subset)

    return read


def _asvspoof2021_reader(track: str) -> Reader:
    """Reader of ASVspoof 2021 ``track`` ('LA' or 'DF'): ``keys/<track>/CM/trial_metadata.txt`` and
    ``ASVspoof2021_<track>_eval/flac/``. ``subset`` picks rows by their subset column: ``eval``, ``progress``,
    ``hidden`` (every ``hidden_*``), an exact value, or ``all``."""

    def read(root: Path, subset: str) -> list[Trial]:
        # The keys archive (<track>-keys-full.tar.gz) unpacks to keys/<track>/CM/, sometimes inside its own folder.
        keys = _first_existing([folder / "keys" / track / "CM" / "trial_metadata.txt"
                                for folder in (root, root / f"{track}-keys-full", root / track)],
                               f"ASVspoof 2021 {track} keys")
        audio_dir = root / f"ASVspoof2021_{track}_eval" / "flac"
        if not audio_dir.is_dir() and audio_dir.parent.is_dir():  # the files straight in the eval folder
            audio_dir = audio_dir.parent
        trials = read_protocol_file(keys, "asvspoof2021", audio_dir=audio_dir)
        if subset == "all":
            return trials
        chosen = [t for t in trials if t.subset == subset or t.subset.startswith(f"{subset}_")]
        if not chosen:
            present = sorted({t.subset for t in trials})
            raise InputError(f"no trials of subset {subset!r} in {keys}; it holds {', '.join(present)} (or 'all')")
        return chosen

    return read


_ASVSPOOF5_FILES = {  # subset -> (protocol names, newest first; audio folder)
    "train": (("ASVspoof5.train.tsv", "ASVspoof5.train.metadata.txt"), "flac_T"),
    "dev": (("ASVspoof5.dev.track_1.tsv", "ASVspoof5.dev.metadata.txt"), "flac_D"),
    "eval": (("ASVspoof5.eval.track_1.tsv",), "flac_E_eval"),
}


@DATASETS.register("asv5")
def read_asvspoof5(root: Path, subset: str) -> list[Trial]:
    """ASVspoof 5: protocols in ``root`` or ``root/ASVspoof5_protocols`` (the early ``*.metadata.txt`` too);
    audio in ``flac_T``, ``flac_D``, ``flac_E_eval``."""
    subset = _choose_subset("asv5", subset, {name: name for name in _ASVSPOOF5_FILES})
    names, audio_folder = _ASVSPOOF5_FILES[subset]
    protocol = _first_existing([folder / name for name in names for folder in (root, root / "ASVspoof5_protocols")],
                               f"ASVspoof 5 {subset} protocol")
    return _with_subset(read_protocol_file(protocol, "asvspoof5", audio_dir=root / audio_folder), subset)


_FOR_SUBSETS = {"training": "training", "validation": "validation", "testing": "testing",
                "train": "training", "dev": "validation", "eval": "testing"}
# The published archives unpack two variants under longer folder names.
_FOR_FOLDERS = {"for-original": ("for-original",), "for-norm": ("for-norm",),
                "for-2sec": ("for-2sec", "for-2seconds"), "for-rerec": ("for-rerec", "for-rerecorded")}


def _fake_or_real_reader(variant: str) -> Reader:
    """Reader of one Fake-or-Real variant: ``<variant>/<subset>/{real,fake}/*``; the label is the folder name and
    the utt id the path relative to the variant folder, since file stems repeat across folders."""

    def read(root: Path, subset: str) -> list[Trial]:
        subset = _choose_subset(variant, subset, _FOR_SUBSETS)
        if (root / subset).is_dir():  # root is the variant folder itself
            base = root
        else:
            base = _first_existing([root / folder for folder in _FOR_FOLDERS[variant]], f"{variant} folder")
        trials = []
        for folder, label in (("real", BONAFIDE), ("fake", SPOOF)):
            directory = base / subset / folder
            if not directory.is_dir():
                raise InputError(f"{variant} {subset}: folder {directory} not found (expected real/ and fake/)")
            files = sorted(p for p in directory.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
            trials += [Trial(f"{subset}/{folder}/{p.name}", p, label, _attack(label, UNKNOWN_ATTACK), subset=subset)
                       for p in files]
        if not trials:
            raise InputError(f"{variant} {subset}: no audio files ({', '.join(AUDIO_SUFFIXES)}) under {base / subset}")
        return trials

    return read


@DATASETS.register("in-the-wild")
def read_in_the_wild(root: Path, subset: str) -> list[Trial]:
    """In-the-Wild: ``release_in_the_wild/meta.csv`` (``file,speaker,label``); the whole corpus is one eval set,
    so ``subset`` is ignored."""
    meta = _first_existing([root / "release_in_the_wild" / "meta.csv", root / "meta.csv"], "In-the-Wild meta.csv")
    return _with_subset(read_protocol_file(meta, "in-the-wild"), "eval")


@DATASETS.register("csv")
def read_csv_dataset(root: Path, subset: str) -> list[Trial]:
    """Generic CSV (``path,label[,attack,speaker,subset,...]``): ``root`` is the file or a folder holding
    ``protocol.csv``; paths are relative to the file. When a subset column is filled in, rows of ``subset`` are
    kept (``all`` keeps every row)."""
    path = root / "protocol.csv" if root.is_dir() else root
    trials = read_protocol_file(path, "csv")
    if subset == "all" or not any(t.subset for t in trials):
        return trials
    chosen = [t for t in trials if t.subset == subset]
    if not chosen:
        present = sorted({t.subset for t in trials if t.subset})
        raise InputError(f"no rows of subset {subset!r} in {path}; its subset column holds {', '.join(present)}")
    return chosen


DATASETS.register("asv19-la")(_asvspoof2019_reader("LA"))
DATASETS.register("asv19-pa")(_asvspoof2019_reader("PA"))
# The embedded corpus is written in the ASVspoof 2019 LA layout, so the real reader path is exercised.
DATASETS.register("synthetic")(DATASETS["asv19-la"])
DATASETS.register("asv21-la")(_asvspoof2021_reader("LA"))
DATASETS.register("asv21-df")(_asvspoof2021_reader("DF"))
for _variant in _FOR_FOLDERS:
    DATASETS.register(_variant)(_fake_or_real_reader(_variant))
