"""plastispoof prepare: every corpus layout checked against its counts, missing / extra / unusable files, the
label x attack table, and the Parquet manifest that the other commands read instead of the corpus."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from corpus_layouts import LAYOUTS, write_layout

from plastispoof.data.manifest import read_manifest
from plastispoof.data.prepare import PUBLISHED_COUNTS, format_check, label_attack_table, prepare_corpus
from plastispoof.data.protocols import read_dataset
from plastispoof.errors import InputError
from plastispoof.results import expand_audio_paths

SRC = str(Path(__file__).resolve().parents[1] / "src")


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "plastispoof.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def expected_of(counts: dict) -> dict:
    return {subset: nb + ns for subset, (nb, ns) in counts.items()}


@pytest.mark.parametrize("name", LAYOUTS)
def test_every_layout_is_counted_and_its_manifest_reads_back_as_the_corpus(tmp_path, name):
    counts = write_layout(name, tmp_path / "corpus")
    check = prepare_corpus(name, tmp_path / "corpus", expected=expected_of(counts), out=tmp_path / "m.parquet",
                           show_progress=False)
    assert {subset: n for subset, (n, _) in check.counts.items()} == expected_of(counts)
    assert check.extra == []
    # The label x attack table: bona fide per subset, then the attacks (unknown for corpora naming none).
    table = dict(label_attack_table(check.trials))
    assert {s: n for s, n in table["bonafide"].items()} == {s: nb for s, (nb, _) in counts.items()}
    spoof_rows = {attack: row for attack, row in table.items() if attack != "bonafide"}
    assert sum(sum(row.values()) for row in spoof_rows.values()) == sum(ns for _, ns in counts.values())
    assert set(spoof_rows) == ({"unknown"} if name in ("for-norm", "in-the-wild") else {"A01", "A02"})

    manifest = read_manifest(tmp_path / "m.parquet")
    assert [(t.utt_id, t.path.resolve(), t.label, t.attack, t.speaker, t.subset, t.meta) for t in manifest] == \
        [(t.utt_id, t.path.resolve(), t.label, t.attack, t.speaker, t.subset, t.meta) for t in check.trials]
    table = pq.read_table(tmp_path / "m.parquet").to_pylist()
    assert table[0]["size"] == check.trials[0].path.stat().st_size
    assert table[0]["mtime_ns"] == check.trials[0].path.stat().st_mtime_ns
    # The manifest dataset: one subset, as the corpus reader gives it.
    subset = next(iter(counts))
    reader_subset = "all" if name in ("asv21-la", "asv21-df", "csv") else subset
    wanted = [t for t in read_dataset(name, tmp_path / "corpus", reader_subset) if t.subset == subset]
    assert [t.utt_id for t in read_dataset("manifest", tmp_path / "m.parquet", subset)] == [t.utt_id for t in wanted]


def test_published_counts_are_checked(tmp_path):
    write_layout("asv19-la", tmp_path / "c")
    assert PUBLISHED_COUNTS["asv19-la"] == {"train": 25_380, "dev": 24_844, "eval": 71_237}
    with pytest.raises(InputError, match=r"train has 7 rows, the published corpus 25,380; dev has 5 rows, the "
                                         r"published corpus 24,844"):
        prepare_corpus("asv19-la", tmp_path / "c", show_progress=False)
    result = cli("prepare", "asv19-la", "--root", str(tmp_path / "c"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "25,380" in result.stderr
    # The keys-only corpora are checked against their own rows; --expect names a deliberately partial copy.
    result = cli("prepare", "asv19-la", "--root", str(tmp_path / "c"), "--expect", "train=7,dev=5,eval=4")
    assert result.returncode == 0, result.stderr
    assert "train                  7           7" in result.stdout
    assert "extra audio files no protocol names: 0" in result.stdout


def test_missing_and_extra_files_are_counted_with_examples(tmp_path):
    counts = write_layout("asv19-la", tmp_path / "c")
    flac = tmp_path / "c" / "LA" / "ASVspoof2019_LA_train" / "flac"
    (flac / "LA_T_0000001.flac").unlink()
    (flac / "LA_T_0000002.flac").unlink()
    shutil.copy(flac / "LA_T_0000003.flac", flac / "stray.flac")
    (flac / "notes.txt").write_text("not audio")
    result = cli("prepare", "asv19-la", "--root", str(tmp_path / "c"), "--expect", "train=7,dev=5,eval=4")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: 2 protocol row(s) of asv19-la under")
    assert "LA_T_0000001.flac" in result.stderr
    assert result.stderr.count("\n") == 1
    sf.write(flac / "LA_T_0000001.flac", np.full(800, 0.1, np.float32), 16000)
    sf.write(flac / "LA_T_0000002.flac", np.full(800, 0.1, np.float32), 16000)
    check = prepare_corpus("asv19-la", tmp_path / "c", expected=expected_of(counts), show_progress=False)
    assert check.extra == [flac / "stray.flac"]  # audio only: notes.txt is not an extra utterance
    assert f"extra audio files no protocol names: 1 (e.g. {flac / 'stray.flac'})" in format_check(check)


def test_a_root_holding_another_corpus_says_which(tmp_path):
    write_layout("asv19-pa", tmp_path / "pa")
    result = cli("prepare", "asv19-la", "--root", str(tmp_path / "pa"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "looks like asv19-pa instead" in result.stderr
    write_layout("in-the-wild", tmp_path / "itw")
    with pytest.raises(InputError, match="looks like in-the-wild"):
        read_dataset("asv21-df", tmp_path / "itw", "eval")


def test_unpacked_archive_variants(tmp_path):
    # LA.zip unpacked into a folder of its own name (LA/LA/...), audio straight in the subset folder.
    write_layout("asv19-la", tmp_path / "x")
    nested = tmp_path / "nested" / "LA"
    nested.mkdir(parents=True)
    shutil.move(str(tmp_path / "x" / "LA"), str(nested / "LA"))
    flat = nested / "LA" / "ASVspoof2019_LA_dev"
    for file in (flat / "flac").iterdir():
        file.rename(flat / file.name)
    (flat / "flac").rmdir()
    trials = read_dataset("asv19-la", tmp_path / "nested", "dev")
    assert len(trials) == 5 and trials[0].path.parent == flat
    # The 2021 keys archive unpacked in its own folder.
    write_layout("asv21-la", tmp_path / "k")
    shutil.move(str(tmp_path / "k" / "keys"), str(tmp_path / "k" / "LA-keys-full" / "keys"))
    check = prepare_corpus("asv21-la", tmp_path / "k", show_progress=False)
    assert {s: n for s, (n, _) in check.counts.items()} == {"eval": 5, "hidden_track": 2, "progress": 3}


def test_check_audio_reports_rates_durations_and_unusable_files(tmp_path):
    counts = write_layout("csv", tmp_path / "c")
    sf.write(tmp_path / "c" / "audio" / "train" / "1.flac", np.zeros(1600, np.float32), 16000)  # silent
    (tmp_path / "c" / "audio" / "eval" / "0.flac").write_bytes(b"fLaC not really")  # corrupt
    sf.write(tmp_path / "c" / "audio" / "eval" / "2.flac", np.full(2205, 0.1, np.float32), 22050)
    out = tmp_path / "m.parquet"
    result = cli("prepare", "csv", "--root", str(tmp_path / "c"), "--check-audio", "--jobs", "2", "--out", str(out))
    assert result.returncode == 2 and not out.exists()
    assert "sample rates: 16000 Hz x 5, 22050 Hz x 1" in result.stdout
    assert "silent: 1" in result.stdout and "corrupt: 1" in result.stdout
    assert result.stderr.startswith("error: 2 unusable audio file(s), e.g.") and "digital silence" in result.stderr

    check = prepare_corpus("csv", tmp_path / "c", check_audio=True, jobs=2, out=out, drop_unusable=True,
                           expected=expected_of(counts), show_progress=False)
    rows = pq.read_table(out).to_pylist()
    assert check.dropped == 2 and len(rows) == 5
    by_name = {Path(row["path"]).name + row["subset"]: row for row in rows}
    assert by_name["2.flaceval"]["sample_rate"] == 22050 and by_name["2.flaceval"]["duration"] == pytest.approx(0.1)
    assert by_name["0.flactrain"]["duration"] == pytest.approx(0.05)


def test_a_stale_manifest_is_refused_with_one_line(tmp_path):
    write_layout("asv19-la", tmp_path / "c")
    out = tmp_path / "m.parquet"
    prepare_corpus("asv19-la", tmp_path / "c", expected={"train": 7, "dev": 5, "eval": 4}, out=out,
                   show_progress=False)
    changed = tmp_path / "c" / "LA" / "ASVspoof2019_LA_eval" / "flac" / "LA_E_0000000.flac"
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    with pytest.raises(InputError, match=r"manifest .* is stale: 1 file\(s\) changed .*LA_E_0000000.flac; rebuild"):
        read_dataset("manifest", out, "eval")
    assert len(read_dataset("manifest", out, "dev")) == 5  # the other subsets' files did not change
    with pytest.raises(InputError, match="is stale"):  # what `score manifest.parquet` lists
        expand_audio_paths([out])
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns - 10**9))
    assert [path for path, _ in expand_audio_paths([out])] == [t.path.resolve() for t in read_manifest(out)]


def test_train_evaluate_and_calibrate_read_the_manifest_as_the_corpus(tmp_path):
    from tiny_run import tiny_config

    from plastispoof.calibrate import calibrate
    from plastispoof.evaluate import evaluate_run
    from plastispoof.training import train

    corpus = tmp_path / "c"
    counts = write_layout("asv19-la", corpus)
    manifest = tmp_path / "m.parquet"
    prepare_corpus("asv19-la", corpus, expected=expected_of(counts), out=manifest, show_progress=False)
    runs = {}
    for dataset, root in (("asv19-la", corpus), ("manifest", manifest)):
        cfg = tiny_config(tmp_path / "runs", root, name=dataset, data={"dataset": dataset, "num_samples": 800},
                          train={"epochs": 1})
        runs[dataset] = train(cfg)
        evaluate_run(runs[dataset], dataset, root, "eval", bootstrap=0)
    scores = {name: (run / "scores" / f"{name}-eval.txt").read_text() for name, run in runs.items()}
    assert scores["manifest"] == scores["asv19-la"] and len(scores["manifest"].splitlines()) == 4
    weights = [(run / "model.safetensors").read_bytes() for run in runs.values()]
    assert weights[0] == weights[1]  # the same trials in the same order: the same training
    _, fitted = calibrate(runs["manifest"], "manifest", manifest, "dev")
    assert fitted["n_bonafide"] == 2 and fitted["n_spoof"] == 3
