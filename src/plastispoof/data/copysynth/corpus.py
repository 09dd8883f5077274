"""A spoof corpus built from real recordings, in the ASVspoof 2019 LA layout, with leave-one-family-out protocols.

Every bona fide source gives one bona fide utterance, one copy-synthesis spoof per vocoder family (the
family's attacks take turns) and one TTS spoof per engine (speaking the source's transcript, or a built-in
sentence of its language). All of them pass through the same :class:`~.channel.Channel`.

Layout under ``out`` (the embedded corpus' layout, so ``read_dataset("asv19-la", out, subset)`` reads it)::

    LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.{train.trn,dev.trl,eval.trl}.txt
    LA/ASVspoof2019_LA_{train,dev,eval}/flac/LA_{T,D,E}_<7 digits>.flac
    lofo/<family>/LA/ASVspoof2019_LA_cm_protocols/...   train and dev without <family>; eval: everything
    lofo/<family>/LA/ASVspoof2019_LA_{train,dev,eval} -> ../../../LA/ASVspoof2019_LA_{train,dev,eval}
    corpus.json                                          the manifest, written last (a finished corpus)

Splits. ``text`` (the default): every distinct text (the transcript, else the file itself) goes to one
subset, drawn speaker by speaker in proportions 50 / 20 / 30 %, so subsets never share a sentence while every
speaker appears in all of them (needed with a handful of speakers: a detector trained on two voices and
tested on a third would be measured on the voice change as much as on the spoof). ``speaker``: whole
speakers go to one subset (needs three speakers at least); texts may then repeat across subsets.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from plastispoof.audio import SILENCE_LEVEL
from plastispoof.data import synthetic
from plastispoof.data.copysynth.channel import Channel
from plastispoof.data.copysynth.tts import TTS_ENGINES, builtin_sentence, engine
from plastispoof.data.copysynth.vocoders import COPY_ATTACKS, COPY_FAMILIES, CopyAttack, analyse
from plastispoof.data.synthetic import SAMPLE_RATE, SUBSETS, _Entry, audio_dir, protocol_path
from plastispoof.errors import InputError
from plastispoof.fileio import atomic_write_json, atomic_write_text

CORPUS_VERSION = 1  # bump when the audio changes, so finished corpora are rebuilt
MANIFEST_NAME = "corpus.json"
SPLITS = ("text", "speaker")
SPLIT_SHARES = (0.5, 0.2, 0.3)  # train, dev, eval
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif", ".au")
_SUBSET_LETTER = {"train": "T", "dev": "D", "eval": "E"}


@dataclass(frozen=True)
class Source:
    """One bona fide recording."""

    path: Path
    speaker: str
    language: str
    text: str | None = None


# --------------------------------------------------------------------------------------------- sources


def find_sources(folder: str | os.PathLike, language: str = "en",
                 transcripts: str | os.PathLike | None = None,
                 note: Callable[[str], None] = lambda text: None) -> list[Source]:
    """Decodable recordings under ``folder`` (recursively, sorted); the speaker is the first sub-folder
    (``folder``'s own name for files directly inside it). ``transcripts``: CSV with columns path,text (paths
    relative to ``folder`` or absolute). Files that cannot be decoded are skipped and ``note`` is told how many,
    with the first names."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"--bonafide folder not found: {root}")
    candidates = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    texts = read_transcripts(transcripts, root) if transcripts else {}
    sources, bad = [], []
    for path in candidates:
        try:
            info = sf.info(str(path))
            if info.frames == 0:
                raise ValueError("no samples")
        except Exception:  # noqa: BLE001 - libsndfile raises several types for a file it cannot read
            bad.append(str(path))
            continue
        relative = path.relative_to(root)
        speaker = relative.parts[0] if len(relative.parts) > 1 else root.resolve().name
        sources.append(Source(path, speaker, language, texts.get(path.resolve())))
    if bad and sources:
        note(f"note: skipped {len(bad)} of {len(candidates)} files under {root} that cannot be decoded, e.g. "
             + ", ".join(bad[:3]))
    if not sources:
        looked = f"{len(candidates)} audio-named file(s), none decodable" if candidates else "no audio files"
        raise InputError(f"no decodable audio under --bonafide {root} ({looked}; suffixes {' '.join(AUDIO_SUFFIXES)})")
    return sources


def read_transcripts(path: str | os.PathLike, root: Path) -> dict[Path, str]:
    """{resolved audio path: text} from a CSV with columns ``path`` and ``text``."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as err:
        raise InputError(f"cannot read --transcripts {path}: {err.strerror}") from err
    if not rows or not {"path", "text"} <= set(rows[0]):
        raise InputError(f"--transcripts {path} needs a header with the columns path,text")
    return {((root / row["path"]) if not Path(row["path"]).is_absolute() else Path(row["path"])).resolve():
            row["text"].strip() for row in rows if row["text"] and row["text"].strip()}


def limit_per_speaker(sources: list[Source], max_utterances: int | None, seed: int) -> list[Source]:
    """At most ``max_utterances`` sources per speaker, drawn with ``seed`` (order kept)."""
    if max_utterances is None:
        return sources
    if max_utterances < 1:
        raise InputError(f"--max-utterances must be at least 1, not {max_utterances}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    keep: set[int] = set()
    for speaker in sorted({s.speaker for s in sources}):
        indices = [i for i, s in enumerate(sources) if s.speaker == speaker]
        keep.update(indices if len(indices) <= max_utterances else
                    rng.choice(indices, max_utterances, replace=False).tolist())
    return [s for i, s in enumerate(sources) if i in keep]


# ---------------------------------------------------------------------------------------------- splits


def _text_key(source: Source) -> str:
    return " ".join(source.text.lower().split()) if source.text else f"file:{source.path.resolve()}"


def assign_subsets(sources: list[Source], split: str, seed: int) -> list[str]:
    """The subset of every source (see the module docstring for the two ways to split)."""
    if split not in SPLITS:
        raise InputError(f"unknown --split {split!r}; choose from {', '.join(SPLITS)}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    speakers = sorted({s.speaker for s in sources})
    if split == "speaker":
        if len(speakers) < 3:
            raise InputError(f"--split speaker needs 3 speakers at least, found {len(speakers)}; use --split text")
        order = [speakers[i] for i in rng.permutation(len(speakers))]
        of_speaker = {speaker: _subset_of_rank(i, len(order)) for i, speaker in enumerate(order)}
        return [of_speaker[s.speaker] for s in sources]
    of_text: dict[str, str] = {}
    for speaker in speakers:
        texts = sorted({_text_key(s) for s in sources if s.speaker == speaker} - set(of_text))
        for rank, k in enumerate(rng.permutation(len(texts))):
            of_text[texts[k]] = _subset_of_rank(rank, len(texts))
    return [of_text[_text_key(s)] for s in sources]


def _subset_of_rank(rank: int, n: int) -> str:
    """Subset of the ``rank``-th of ``n`` shuffled items shared 50 / 20 / 30 %: each subset gets one at least
    when n >= 3 (with fewer: train, then eval)."""
    if n < 3:
        return ("train", "eval")[min(rank, 1)]
    n_train = min(max(1, round(SPLIT_SHARES[0] * n)), n - 2)
    n_dev = min(max(1, round(SPLIT_SHARES[1] * n)), n - 1 - n_train)
    return "train" if rank < n_train else "dev" if rank < n_train + n_dev else "eval"


# ------------------------------------------------------------------------------------------------ jobs


@dataclass(frozen=True)
class _Output:
    utt_id: str
    attack_id: str | None  # None = bona fide
    path: Path


@dataclass(frozen=True)
class _SourceJob:
    """One source and every file made from it (picklable, for worker processes)."""

    source: Source
    outputs: tuple[_Output, ...]
    tts_texts: tuple[str, ...]  # one per TTS output, in order
    channel: Channel
    entropy: tuple[int, ...]


def _write_source(job: _SourceJob) -> list[tuple[str, float]]:
    """Write the bona fide utterance and its spoofs; returns (utt_id, seconds) for each."""
    rng = np.random.default_rng(np.random.SeedSequence(list(job.entropy)))
    raw, rate = sf.read(str(job.source.path), dtype="float64", always_2d=True)
    raw = raw.mean(axis=1)
    if np.abs(raw).max(initial=0.0) < SILENCE_LEVEL:  # the channel would blow its noise floor up to speech level
        raise InputError(f"bona fide recording {job.source.path} is digital silence")
    at_16k = Channel.resample(raw, rate)
    speech = None
    tts_texts = iter(job.tts_texts)
    written = []
    for output in job.outputs:
        if output.attack_id is None:
            audio = job.channel(raw, rate)
        elif output.attack_id in COPY_ATTACKS:
            speech = speech or analyse(at_16k)
            audio = job.channel(COPY_ATTACKS[output.attack_id].apply(speech, rng), SAMPLE_RATE)
        else:
            tts = next(e for e in TTS_ENGINES.values() if e.attack_id == output.attack_id)
            spoken, spoken_rate = tts.speak(next(tts_texts), job.source.language, rng)
            audio = job.channel(spoken, spoken_rate)
        _write_flac(output.path, audio)
        written.append((output.utt_id, len(audio) / SAMPLE_RATE))
    return written


def _write_flac(path: Path, audio: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")  # the name synthetic._remove_stale_audio cleans up
    sf.write(tmp, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # "copy-synthesis" | "tts"
    attacks: tuple[str, ...]
    description: str
    languages: tuple[str, ...] | None = None  # a TTS family of a mixed corpus: the languages it speaks (None: all)


def choose_families(attacks: list[str] | None, tts: list[str] | None, languages: set[str],
                    partial_tts: bool = False) -> list[Family]:
    """Families from ``attacks`` (family names or attack IDs; None = every copy-synthesis family whose codecs
    this machine has) and ``tts`` (engine names); checks the engines and encoders are installed.

    ``partial_tts`` (a recipe of several languages): an engine speaks the sources of the languages it has a voice
    for and skips the others (it must speak one at least); otherwise it must speak every language."""
    chosen: dict[str, list[CopyAttack]] = {}
    explicit = attacks is not None
    for name in (attacks if explicit else list(COPY_FAMILIES)):
        members = [a for a in COPY_ATTACKS.values() if name in (a.family, a.attack_id)]
        if not members:
            known = ", ".join([*COPY_FAMILIES, *COPY_ATTACKS])
            raise InputError(f"unknown copy-synthesis family or attack {name!r}; known: {known}")
        usable = [a for a in members if a.available()]
        if explicit and len(usable) < len(members):
            lacking = sorted({e for a in members for e in a.codecs if a not in usable})
            raise InputError(f"{name} needs the {', '.join(lacking)} encoder(s), which this PyAV / FFmpeg build lacks")
        for attack in usable:
            chosen.setdefault(attack.family, [])
            if attack not in chosen[attack.family]:
                chosen[attack.family].append(attack)
    families = [Family(name, "copy-synthesis", tuple(a.attack_id for a in members),
                       "; ".join(f"{a.attack_id}: {a.description}" for a in members))
                for name, members in chosen.items() if members]
    for name in dict.fromkeys(tts or []):
        tts_engine = engine(name)
        spoken = None
        if partial_tts:
            spoken = tuple(sorted(language for language in languages if tts_engine.speaks(language)))
            tts_engine.check(set(spoken) or languages)
        else:
            tts_engine.check(languages)
        families.append(Family(name, "tts", (tts_engine.attack_id,), tts_engine.description, spoken))
    return families


def write_copysynth_corpus(out: str | os.PathLike, sources: list[Source], *, attacks: list[str] | None = None,
                           tts: list[str] | None = None, max_utterances: int | None = None, seed: int = 42,
                           split: str = "text", channel: Channel | None = None, origin: str = "",
                           partial_tts: bool = False, subsets: list[str] | None = None) -> Path:
    """Write the corpus made from ``sources`` under ``out`` and return ``out`` (see the module docstring).

    ``attacks``: copy-synthesis families or attack IDs (None = all); ``tts``: engine names; at least two
    families in all, as each gets a leave-one-family-out protocol. The same sources and settings give the same
    files; a finished corpus with the same settings returns at once. ``subsets`` (one of train / dev / eval per
    source, with ``max_utterances`` None) replaces the ``split`` rule.
    """
    root = Path(out)
    sources = limit_per_speaker(sources, max_utterances, seed)
    families = choose_families(attacks, tts, {s.language for s in sources}, partial_tts)
    if len(families) < 2:
        raise InputError(f"leave-one-family-out needs at least two families, got {len(families)} "
                         f"({', '.join(f.name for f in families) or 'none'}); add --attacks or --tts")
    if subsets is None:
        subsets = assign_subsets(sources, split, seed)
    elif len(subsets) != len(sources) or set(subsets) - set(SUBSETS):
        raise ValueError("subsets: one of train, dev, eval per source")
    else:
        split = "given"  # the caller's split (plastispoof adapt), recorded in the settings
    if channel is None:
        channel = Channel.for_sources(min(sf.info(str(s.path)).samplerate for s in sources))
    settings = {"version": CORPUS_VERSION, "origin": origin, "seed": seed, "split": split,
                "max_utterances": max_utterances, "families": [f.name for f in families],
                "channel": channel.as_dict(), "sample_rate": SAMPLE_RATE,
                "sources": [str(s.path) for s in sources], **({"subsets": subsets} if split == "given" else {})}
    existing = _read_json(root / MANIFEST_NAME)
    if existing and existing.get("settings") == settings:
        return root
    (root / MANIFEST_NAME).unlink(missing_ok=True)
    entries, jobs = _plan(root, sources, subsets, families, channel, seed)
    for subset in SUBSETS:
        audio_dir(root, subset).mkdir(parents=True, exist_ok=True)
    seconds = dict(pair for result in synthetic._run_jobs(jobs, "copy-synthesis corpus", _write_source,
                                                          parallel_from=8, chunksize=1) for pair in result)
    for subset in SUBSETS:
        synthetic._remove_stale_audio(audio_dir(root, subset), {f"{e.utt_id}.flac" for e in entries
                                                                if e.subset == subset})
    write_protocols(root, entries)
    lofo = {family.name: write_lofo(root, entries, family) for family in families}
    for stale in (root / "lofo").iterdir():  # families of an earlier corpus in this folder
        if stale.name not in lofo and (stale / "LA" / "ASVspoof2019_LA_cm_protocols").is_dir():
            shutil.rmtree(stale)
    manifest = _manifest(root, entries, families, sources, subsets, seconds, lofo, settings)
    atomic_write_json(root / MANIFEST_NAME, manifest)
    return root


def _plan(root: Path, sources: list[Source], subsets: list[str], families: list[Family], channel: Channel,
          seed: int) -> tuple[list[_Entry], list[_SourceJob]]:
    entries: list[_Entry] = []
    jobs: list[_SourceJob] = []
    counters = dict.fromkeys(SUBSETS, 0)
    sentence_counters: dict[tuple[str, str], int] = {}
    turns: dict[tuple[str, str], int] = {}
    for index, (source, subset) in enumerate(zip(sources, subsets)):
        outputs, tts_texts = [], []
        attack_ids: list[str | None] = [None]
        for family in families:
            if family.kind == "copy-synthesis":  # the family's attacks take turns over a subset's sources
                turn = turns.get((subset, family.name), 0)
                turns[(subset, family.name)] = turn + 1
                attack_ids.append(family.attacks[turn % len(family.attacks)])
            elif family.languages is None or source.language in family.languages:
                attack_ids.append(family.attacks[0])
                tts_texts.append(source.text or _builtin_text(source.language, subset, sentence_counters))
        for attack_id in attack_ids:
            counters[subset] += 1
            utt_id = f"LA_{_SUBSET_LETTER[subset]}_{counters[subset]:07d}"
            outputs.append(_Output(utt_id, attack_id, audio_dir(root, subset) / f"{utt_id}.flac"))
            entries.append(_Entry(subset, source.speaker, utt_id, attack_id))
        jobs.append(_SourceJob(source, tuple(outputs), tuple(tts_texts), channel, (seed, 3, index)))
    return entries, jobs


def _builtin_text(language: str, subset: str, counters: dict[tuple[str, str], int]) -> str:
    """The next built-in sentence of ``language`` for ``subset``: sentence i belongs to subset i mod 3, so the
    subsets never share one."""
    k = counters.get((language, subset), 0)
    counters[(language, subset)] = k + 1
    return builtin_sentence(language, 3 * k + SUBSETS.index(subset))


def write_protocols(root: Path, entries: list[_Entry], exclude: tuple[str, ...] = ()) -> None:
    """The three protocol files under ``root``; train and dev leave out the attacks in ``exclude``."""
    for subset in SUBSETS:
        lines = [e.protocol_line() for e in entries
                 if e.subset == subset and (subset == "eval" or e.attack_id not in exclude)]
        atomic_write_text(protocol_path(root, subset), "\n".join(lines) + "\n")


def write_lofo(root: Path, entries: list[_Entry], family: Family) -> str:
    """``root/lofo/<family>``: protocols without the family in train and dev, links to the main audio."""
    relative = f"lofo/{family.name}"
    lofo = root / relative
    write_protocols(lofo, entries, exclude=family.attacks)
    for subset in SUBSETS:
        link = audio_dir(lofo, subset).parent
        target = os.path.relpath(audio_dir(root, subset).parent, link.parent)
        if link.is_symlink() and os.readlink(link) == target:
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    return relative


def _manifest(root: Path, entries: list[_Entry], families: list[Family], sources: list[Source], subsets: list[str],
              seconds: dict[str, float], lofo: dict[str, str], settings: dict) -> dict:
    family_of = {attack: f.name for f in families for attack in f.attacks}
    counts: dict = {}
    durations: dict = {}
    for subset in SUBSETS:
        chosen = [e for e in entries if e.subset == subset]
        by_class = {"bonafide": [e for e in chosen if e.attack_id is None]}
        by_class.update({f.name: [e for e in chosen if family_of.get(e.attack_id or "") == f.name] for f in families})
        counts[subset] = {
            "bonafide": len(by_class["bonafide"]), "spoof": len(chosen) - len(by_class["bonafide"]),
            "per_attack": {a: sum(e.attack_id == a for e in chosen) for a in family_of},
            "per_family": {f.name: len(by_class[f.name]) for f in families}}
        durations[subset] = {name: round(sum(seconds[e.utt_id] for e in group), 2) for name, group in by_class.items()}
    speakers = {speaker: {"language": next(s.language for s in sources if s.speaker == speaker),
                          "bonafide": {subset: sum(s.speaker == speaker and t == subset
                                                   for s, t in zip(sources, subsets)) for subset in SUBSETS}}
                for speaker in sorted({s.speaker for s in sources})}
    return {"layout": "asv19-la", "families": {f.name: {"attacks": list(f.attacks), "kind": f.kind,
                                                        "description": f.description,
                                                        **({"languages": list(f.languages)} if f.languages else {})}
                                               for f in families},
            "lofo": lofo, "counts": counts, "durations_s": durations, "speakers": speakers, "settings": settings}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_manifest(root: str | os.PathLike) -> dict:
    """The manifest (``corpus.json``) of a copy-synthesis corpus; :class:`InputError` when there is none."""
    manifest = _read_json(Path(root) / MANIFEST_NAME)
    if manifest is None:
        raise InputError(f"no copy-synthesis corpus at {root}: {MANIFEST_NAME} is missing or unreadable "
                         "(write one with plastispoof synth --bonafide DIR or --recipe open-speech)")
    return manifest


def lofo_root(root: str | os.PathLike, family: str) -> Path:
    """The corpus root (for ``read_dataset("asv19-la", ...)``) of the protocols that hold ``family`` out."""
    lofo = read_manifest(root)["lofo"]
    if family not in lofo:
        raise InputError(f"no family {family!r} in the corpus at {root}; it has {', '.join(lofo)}")
    return Path(root) / lofo[family]
