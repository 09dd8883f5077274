"""Protocol readers on fixture corpora written in the published line shapes (formats.md), their traps and their
bad-input errors; the torch dataset and seeded subsets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from plastispoof.audio import load_audio
from plastispoof.data.dataset import TrialDataset, class_counts, subsample
from plastispoof.data.protocols import PROTOCOL_FORMATS, detect_format, read_dataset, read_protocol_file
from plastispoof.data.trials import Trial
from plastispoof.errors import InputError
from plastispoof.registry import DATASETS


def write_protocol(path: Path, lines: list[str], newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(newline.join(lines).encode() + newline.encode())
    return path


def touch_audio(folder: Path, names) -> None:
    """Empty stand-ins: dataset readers check that audio exists, not what it holds."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).touch()


def by_id(trials):
    return {t.utt_id: t for t in trials}


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(InputError) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_every_documented_dataset_is_registered():
    expected = {"asv19-la", "asv19-pa", "asv21-la", "asv21-df", "asv5", "for-original", "for-norm", "for-2sec",
                "for-rerec", "in-the-wild", "csv", "synthetic"}
    assert expected <= set(DATASETS)
    assert "unknown dataset" in error_of(read_dataset, "asv20-la", ".", "eval")


# ---- ASVspoof 2019 -------------------------------------------------------------------------------------------

LA_TRAIN = ["LA_0079 LA_T_1138215 - - bonafide", "", "LA_0079 LA_T_1271820 - A01 spoof",
            "LA_0080 LA_T_1004644 - A06 spoof", "   "]


def make_asv19(root: Path, access: str, subset: str, lines: list[str], newline: str = "\n") -> Path:
    suffix = "trn" if subset == "train" else "trl"
    protocol = root / access / f"ASVspoof2019_{access}_cm_protocols" / f"ASVspoof2019.{access}.cm.{subset}.{suffix}.txt"
    write_protocol(protocol, lines, newline)
    ids = [line.split()[1] for line in lines if line.strip()]
    touch_audio(root / access / f"ASVspoof2019_{access}_{subset}" / "flac", [f"{utt}.flac" for utt in ids])
    return protocol


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_asv19_la_train(tmp_path, newline):
    make_asv19(tmp_path, "LA", "train", LA_TRAIN, newline)
    trials = read_dataset("asv19-la", tmp_path, "train")
    assert [t.utt_id for t in trials] == ["LA_T_1138215", "LA_T_1271820", "LA_T_1004644"]
    first, second, _ = trials
    assert (first.label, first.attack, first.speaker, first.subset) == ("bonafide", "-", "LA_0079", "train")
    assert (second.label, second.attack, second.target) == ("spoof", "A01", 0)
    assert first.target == 1
    assert second.path == tmp_path / "LA" / "ASVspoof2019_LA_train" / "flac" / "LA_T_1271820.flac"
    assert first.meta == {}


@pytest.mark.parametrize("subset", ["dev", "eval"])
def test_asv19_la_dev_eval_and_synthetic_alias(tmp_path, subset):
    prefix = "D" if subset == "dev" else "E"
    make_asv19(tmp_path, "LA", subset, [f"LA_0039 LA_{prefix}_2834763 - A11 spoof",
                                        f"LA_0040 LA_{prefix}_1000001 - - bonafide"])
    trials = read_dataset("asv19-la", tmp_path, subset)
    assert [(t.label, t.attack, t.subset) for t in trials] == [("spoof", "A11", subset), ("bonafide", "-", subset)]
    assert read_dataset("synthetic", tmp_path, subset) == trials
    assert read_dataset("asv19-la", tmp_path / "LA", subset) == trials  # root may be the LA folder itself


def test_asv19_pa_keeps_environment(tmp_path):
    make_asv19(tmp_path, "PA", "train", ["PA_0079 PA_T_0000001 aaa - bonafide", "PA_0079 PA_T_0000002 bca AB spoof"])
    bona, spoof = read_dataset("asv19-pa", tmp_path, "train")
    assert bona.meta == {"environment": "aaa"} and bona.attack == "-"
    assert spoof.meta == {"environment": "bca"} and spoof.attack == "AB"
    assert spoof.path.parent == tmp_path / "PA" / "ASVspoof2019_PA_train" / "flac"


def test_asv19_unknown_subset(tmp_path):
    make_asv19(tmp_path, "LA", "train", LA_TRAIN)
    assert "train, dev, eval" in error_of(read_dataset, "asv19-la", tmp_path, "progress")


# ---- ASVspoof 2021 -------------------------------------------------------------------------------------------

LA21 = ["LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval",
        "LA_0007 LA_E_5013670 alaw ita_tx bonafide bonafide notrim eval",
        "LA_0012 LA_E_1000002 none sin_tx A16 spoof notrim progress",
        "LA_0013 LA_E_1000003 g722 loc_tx A19 spoof trim hidden_track_1"]
DF21 = ["LA_0043 DF_E_2000026 mp3m4a asvspoof A09 spoof notrim eval traditional_vocoder - - - -",
        "LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim progress traditional_vocoder - - - -",
        "TEF2 DF_E_2000055 low_m4a vcc2020 - bonafide notrim eval bonafide - - - -"]


def make_asv21(root: Path, track: str, lines: list[str]) -> None:
    write_protocol(root / "keys" / track / "CM" / "trial_metadata.txt", lines, "\r\n")
    touch_audio(root / f"ASVspoof2021_{track}_eval" / "flac", [f"{line.split()[1]}.flac" for line in lines])


def test_asv21_la_key_found_by_value(tmp_path):
    make_asv21(tmp_path, "LA", LA21)
    trials = by_id(read_dataset("asv21-la", tmp_path, "all"))
    assert len(trials) == 4  # no spoof line dropped, as a column-4 (2019-style) key would do
    bona, spoof = trials["LA_E_5013670"], trials["LA_E_9332881"]
    assert (bona.label, bona.attack) == ("bonafide", "-")
    assert (spoof.label, spoof.attack, spoof.subset) == ("spoof", "A07", "eval")
    assert spoof.meta == {"codec": "alaw", "transmission": "ita_tx", "trim": "notrim"}
    assert spoof.path == tmp_path / "ASVspoof2021_LA_eval" / "flac" / "LA_E_9332881.flac"


@pytest.mark.parametrize("subset, expected", [("eval", {"LA_E_9332881", "LA_E_5013670"}),
                                              ("progress", {"LA_E_1000002"}),
                                              ("hidden", {"LA_E_1000003"}),
                                              ("hidden_track_1", {"LA_E_1000003"})])
def test_asv21_subsets(tmp_path, subset, expected):
    make_asv21(tmp_path, "LA", LA21)
    assert set(by_id(read_dataset("asv21-la", tmp_path, subset))) == expected


def test_asv21_unknown_subset_lists_present_ones(tmp_path):
    make_asv21(tmp_path, "LA", LA21)
    message = error_of(read_dataset, "asv21-la", tmp_path, "train")
    assert "eval" in message and "progress" in message and "hidden_track_1" in message


def test_asv21_df_extra_columns(tmp_path):
    make_asv21(tmp_path, "DF", DF21)
    trials = by_id(read_dataset("asv21-df", tmp_path, "eval"))
    assert set(trials) == {"DF_E_2000026", "DF_E_2000055"}
    spoof, bona = trials["DF_E_2000026"], trials["DF_E_2000055"]
    assert spoof.meta["codec"] == "mp3m4a" and spoof.meta["source"] == "asvspoof"
    assert spoof.meta["vocoder"] == "traditional_vocoder" and spoof.meta["column13"] == "-"
    assert (spoof.attack, bona.attack, bona.label, bona.speaker) == ("A09", "-", "bonafide", "TEF2")


# ---- ASVspoof 5 ----------------------------------------------------------------------------------------------

ASV5_TRAIN = ["T_4850\tT_0000000000\tF\t-\t-\t-\tAC3\tA05\tspoof\t-",
              "T_1138\tT_0000000001\tM\t-\t-\t-\tbonafide\tbonafide\tbonafide\t-"]


def test_asv5_ten_columns(tmp_path):
    write_protocol(tmp_path / "ASVspoof5_protocols" / "ASVspoof5.train.tsv", ASV5_TRAIN)
    touch_audio(tmp_path / "flac_T", ["T_0000000000.flac", "T_0000000001.flac"])
    spoof, bona = read_dataset("asv5", tmp_path, "train")
    assert (spoof.utt_id, spoof.label, spoof.attack, spoof.speaker, spoof.subset) == \
        ("T_0000000000", "spoof", "A05", "T_4850", "train")
    assert spoof.meta == {"gender": "F", "codec": "-", "codec_q": "-", "codec_seed": "-", "attack_tag": "AC3",
                          "tmp": "-"}
    assert (bona.label, bona.attack, bona.meta["gender"]) == ("bonafide", "-", "M")
    assert spoof.path == tmp_path / "flac_T" / "T_0000000000.flac"


def test_asv5_early_six_columns_and_eval(tmp_path):
    write_protocol(tmp_path / "ASVspoof5.dev.metadata.txt", ["D_0062 D_0000000001 F - A11 spoof",
                                                             "D_0062 D_0000000002 F - bonafide bonafide"])
    touch_audio(tmp_path / "flac_D", ["D_0000000001.flac", "D_0000000002.flac"])
    spoof, bona = read_dataset("asv5", tmp_path, "dev")
    assert (spoof.attack, spoof.label, spoof.meta) == ("A11", "spoof", {"gender": "F", "codec": "-"})
    assert (bona.attack, bona.label) == ("-", "bonafide")

    write_protocol(tmp_path / "ASVspoof5.eval.track_1.tsv", ["E_0001 E_0000000001 M C05 3 12 AT01 A20 spoof -"])
    touch_audio(tmp_path / "flac_E_eval", ["E_0000000001.flac"])
    (trial,) = read_dataset("asv5", tmp_path, "eval")
    assert trial.meta["codec"] == "C05" and trial.meta["codec_q"] == "3"


def test_asv5_missing_protocol_names_where_it_looked(tmp_path):
    message = error_of(read_dataset, "asv5", tmp_path, "train")
    assert "ASVspoof5.train.tsv" in message and "ASVspoof5_protocols" in message


# ---- Fake-or-Real --------------------------------------------------------------------------------------------

def make_for(base: Path) -> None:
    for subset in ("training", "validation", "testing"):
        touch_audio(base / subset / "real", ["file1.wav", "file2.mp3"])
        touch_audio(base / subset / "fake", ["file1.wav", "file3.WAV", "notes.txt"])


def test_for_keys_repeated_stems_by_relative_path(tmp_path):
    make_for(tmp_path / "for-norm")
    trials = read_dataset("for-norm", tmp_path, "training")
    assert sorted(t.utt_id for t in trials) == sorted(["training/real/file1.wav", "training/real/file2.mp3",
                                                       "training/fake/file1.wav", "training/fake/file3.WAV"])
    labels = {t.utt_id: (t.label, t.attack) for t in trials}
    assert labels["training/real/file1.wav"] == ("bonafide", "-")
    assert labels["training/fake/file1.wav"] == ("spoof", "unknown")
    assert all(t.path == tmp_path / "for-norm" / t.utt_id and t.subset == "training" for t in trials)


@pytest.mark.parametrize("alias, subset", [("train", "training"), ("dev", "validation"), ("eval", "testing")])
def test_for_subset_aliases_and_long_folder_names(tmp_path, alias, subset):
    make_for(tmp_path / "for-2seconds")
    trials = read_dataset("for-2sec", tmp_path, alias)
    assert {t.subset for t in trials} == {subset} and len(trials) == 4
    assert read_dataset("for-2sec", tmp_path / "for-2seconds", alias) == trials  # root = the variant folder


def test_for_missing_folder(tmp_path):
    touch_audio(tmp_path / "for-rerec" / "testing" / "real", ["a.wav"])
    assert "fake" in error_of(read_dataset, "for-rerec", tmp_path, "testing")
    assert "for-original" in error_of(read_dataset, "for-original", tmp_path, "testing")


# ---- In-the-Wild and generic CSV -----------------------------------------------------------------------------

def test_in_the_wild(tmp_path):
    folder = tmp_path / "release_in_the_wild"
    write_protocol(folder / "meta.csv", ["file,speaker,label", "0.wav,Alec Guinness,spoof", "",
                                         "1.wav,Alec Guinness,bona-fide"], "\r\n")
    touch_audio(folder, ["0.wav", "1.wav"])
    spoof, bona = read_dataset("in-the-wild", tmp_path, "eval")
    assert (spoof.utt_id, spoof.label, spoof.attack, spoof.speaker) == ("0.wav", "spoof", "unknown", "Alec Guinness")
    assert (bona.label, bona.attack, bona.subset, bona.path) == ("bonafide", "-", "eval", folder / "1.wav")


CSV_LINES = ["path,label,attack,subset,codec", "a/1.wav,bonafide,,train,none", "a/2.wav,Bona-Fide,,train,mp3",
             "a/3.wav,real,,dev,none", "a/4.wav,genuine,,dev,none", "a/5.wav,1,,dev,none",
             "b/1.wav,spoof,tts1,train,none", "b/2.wav,FAKE,,dev,none", "b/3.wav,0,vc2,dev,mp3"]


def test_csv_label_vocabulary_meta_and_subsets(tmp_path):
    protocol = write_protocol(tmp_path / "protocol.csv", CSV_LINES)
    touch_audio(tmp_path / "a", [f"{i}.wav" for i in range(1, 6)])
    touch_audio(tmp_path / "b", ["1.wav", "2.wav", "3.wav"])
    everything = by_id(read_dataset("csv", tmp_path, "all"))
    assert [everything[f"a/{i}.wav"].label for i in range(1, 6)] == ["bonafide"] * 5
    assert [everything[f"b/{i}.wav"].label for i in range(1, 4)] == ["spoof"] * 3
    assert [everything[f"b/{i}.wav"].attack for i in range(1, 4)] == ["tts1", "unknown", "vc2"]
    assert everything["a/2.wav"].meta == {"codec": "mp3"} and everything["a/2.wav"].path == tmp_path / "a" / "2.wav"
    assert set(by_id(read_dataset("csv", protocol, "train"))) == {"a/1.wav", "a/2.wav", "b/1.wav"}
    assert "train, dev" in error_of(read_dataset, "csv", protocol, "eval") or \
        "dev, train" in error_of(read_dataset, "csv", protocol, "eval")


def test_csv_without_subset_column_ignores_subset(tmp_path):
    protocol = write_protocol(tmp_path / "list.csv", ["Path,Label", "x.wav,fake", "y.wav,real"])
    touch_audio(tmp_path, ["x.wav", "y.wav"])
    assert [t.label for t in read_dataset("csv", protocol, "eval")] == ["spoof", "bonafide"]


# ---- read_protocol_file and format detection ------------------------------------------------------------------

@pytest.mark.parametrize("lines, expected", [
    (LA_TRAIN, "asvspoof2019"),
    (["PA_0079 PA_T_0000001 aaa - bonafide"], "asvspoof2019"),
    (LA21, "asvspoof2021"),
    (DF21, "asvspoof2021"),
    (ASV5_TRAIN, "asvspoof5"),
    (["D_0062 D_0000000001 F - A11 spoof"], "asvspoof5"),
    (["file,speaker,label", "0.wav,x,spoof"], "in-the-wild"),
    (CSV_LINES, "csv"),
])
def test_auto_detects_every_format(tmp_path, lines, expected):
    path = write_protocol(tmp_path / "protocol.txt", lines)
    assert detect_format(path, path.read_text()) == expected
    assert read_protocol_file(path) == read_protocol_file(path, expected)
    assert expected in PROTOCOL_FORMATS


def test_protocol_file_needs_no_audio_and_resolves_paths(tmp_path):
    path = write_protocol(tmp_path / "keys.txt", LA21)
    trials = read_protocol_file(path)
    assert len(trials) == 4 and not any(t.path.exists() for t in trials)
    assert trials[0].path == tmp_path / "LA_E_9332881.flac"
    assert read_protocol_file(path, audio_dir=tmp_path / "flac")[0].path == tmp_path / "flac" / "LA_E_9332881.flac"


def test_undetectable_and_unknown_formats(tmp_path):
    path = write_protocol(tmp_path / "scores.txt", ["LA_E_1 0.53", "LA_E_2 -1.2"])
    message = error_of(read_protocol_file, path)
    assert str(path) in message and "asvspoof2019" in message
    assert "unknown protocol format" in error_of(read_protocol_file, path, "kaldi")
    assert "empty" in error_of(read_protocol_file, write_protocol(tmp_path / "blank.txt", ["", "  "]))


# ---- Bad input: file and line number, count + first examples ---------------------------------------------------

def test_missing_audio_reports_count_and_examples(tmp_path):
    make_asv19(tmp_path, "LA", "train", LA_TRAIN)
    for utt in ("LA_T_1271820", "LA_T_1004644"):
        (tmp_path / "LA" / "ASVspoof2019_LA_train" / "flac" / f"{utt}.flac").unlink()
    message = error_of(read_dataset, "asv19-la", tmp_path, "train")
    assert message.startswith("2 missing audio file(s)") and "LA_T_1271820.flac" in message
    assert "LA_T_1004644.flac" in message and "LA_T_1138215" not in message
    assert len(read_dataset("asv19-la", tmp_path, "train", check_audio=False)) == 3


@pytest.mark.parametrize("lines, fmt, line_number, words", [
    (["LA_0079 LA_T_1 - - bonafide", "LA_0079 LA_T_2 - A01 spooof"], "asvspoof2019", 2, "unknown key 'spooof'"),
    (["LA_0079 LA_T_1 - - bonafide", "", "LA_0079 LA_T_2 - A01"], "asvspoof2019", 3, "expected 5 columns"),
    (["LA_0079 LA_T_1 - - bonafide", "LA_0080 LA_T_1 - A01 spoof"], "asvspoof2019", 2, "duplicate utt id 'LA_T_1'"),
    (["LA_0009 LA_E_1 alaw ita_tx A07 fake notrim eval"], "asvspoof2021", 1, "key"),
    (["LA_0009 LA_E_1 alaw ita_tx A07 spoof"], "asvspoof2021", 1, "subset"),
    (["T_1 T_0000000001 F - - - AC3 A05 spoof"], "asvspoof5", 1, "expected 10 columns"),
    (["path,label", "a.wav,bonafide", "b.wav,maybe"], "csv", 3, "unknown label 'maybe'"),
    (["path,label", "a.wav,bonafide", "b.wav,spoof,extra"], "csv", 3, "expected 2 fields"),
    (["file,speaker,label", "0.wav,x,spoof", "0.wav,y,spoof"], "in-the-wild", 3, "duplicate utt id '0.wav'"),
])
def test_bad_line_names_file_and_line(tmp_path, lines, fmt, line_number, words):
    path = write_protocol(tmp_path / "protocol.txt", lines)
    message = error_of(read_protocol_file, path, fmt)
    assert str(path) in message and f"line {line_number}" in message and words in message


def test_several_bad_lines_are_counted(tmp_path):
    lines = ["LA_0079 LA_T_1 - - bonafide"] + [f"LA_0079 LA_T_{i} - A01 fake" for i in range(2, 7)]
    message = error_of(read_protocol_file, write_protocol(tmp_path / "p.txt", lines), "asvspoof2019")
    assert "5 bad protocol line(s)" in message and "line 2" in message and "line 4" in message
    assert "line 6" not in message  # only the first examples


def test_duplicate_reports_first_occurrence(tmp_path):
    path = write_protocol(tmp_path / "p.txt", ["LA_0079 LA_T_1 - - bonafide", "", "LA_0079 LA_T_1 - A01 spoof"])
    assert "line 3: duplicate utt id 'LA_T_1' (first on line 1)" in error_of(read_protocol_file, path)


@pytest.mark.parametrize("content, words", [
    (b"x.wav,spoof\n", "no path, label column"),
    (b"path,label,label\na.wav,spoof,spoof\n", "repeats a column"),
    (b"path,label\n", "holds no trials"),
    (b"path,label\n\xff\xfe.wav,spoof\n", "not UTF-8"),
])
def test_bad_csv_files(tmp_path, content, words):
    path = tmp_path / "protocol.csv"
    path.write_bytes(content)
    assert words in error_of(read_protocol_file, path, "csv")


def test_missing_root_and_protocol(tmp_path):
    assert "root not found" in error_of(read_dataset, "asv19-la", tmp_path / "nowhere", "train")
    message = error_of(read_dataset, "asv19-la", tmp_path, "train")
    assert "protocol file not found" in message and "ASVspoof2019.LA.cm.train.trn.txt" in message


# ---- Dataset -------------------------------------------------------------------------------------------------

@pytest.fixture
def audio_trials(audio_file):
    rng = np.random.default_rng(1)
    lengths = {"long_bona": 9000, "short_spoof": 1500, "long_spoof": 12000}
    return [Trial(name, audio_file(f"{name}.flac", (0.3 * rng.standard_normal(n)).astype(np.float32)),
                  "bonafide" if "bona" in name else "spoof") for name, n in lengths.items()]


def test_dataset_eval_items(audio_trials):
    dataset = TrialDataset(audio_trials, num_samples=4000)
    assert len(dataset) == 3
    for i, trial in enumerate(audio_trials):
        waveform, target, index = dataset[i]
        full = load_audio(trial.path)
        assert waveform.dtype == torch.float32 and waveform.shape == (4000,)
        assert (target, index) == (trial.target, i)
        expected = full[:4000] if len(full) >= 4000 else np.tile(full, 3)[:4000]
        np.testing.assert_array_equal(waveform.numpy(), expected)
    assert torch.equal(dataset[0][0], dataset[0][0])


def test_dataset_train_crops_depend_on_seed_and_epoch_only(audio_trials):
    def crops(seed, epoch):
        dataset = TrialDataset(audio_trials, num_samples=2000, train=True, seed=seed)
        dataset.set_epoch(epoch)
        return [dataset[i][0].numpy() for i in range(3)]

    full = load_audio(audio_trials[2].path)
    first = crops(7, 0)
    np.testing.assert_array_equal(first[2], crops(7, 0)[2])
    start = int(np.flatnonzero(full == first[2][0])[0])
    np.testing.assert_array_equal(first[2], full[start:start + 2000])
    other_epochs = [crops(7, epoch)[2] for epoch in range(1, 6)]
    other_seeds = [crops(seed, 0)[2] for seed in range(8, 13)]
    assert any(not np.array_equal(first[2], crop) for crop in other_epochs)
    assert any(not np.array_equal(first[2], crop) for crop in other_seeds)


def test_dataset_cache_keeps_decoded_audio(audio_trials):
    dataset = TrialDataset(audio_trials, num_samples=3000, cache=True)
    before = dataset[0][0]
    audio_trials[0].path.unlink()
    assert torch.equal(dataset[0][0], before)
    with pytest.raises(InputError):
        TrialDataset(audio_trials, num_samples=3000)[0]


def test_dataset_in_a_dataloader(audio_trials):
    loader = torch.utils.data.DataLoader(TrialDataset(audio_trials, num_samples=1000), batch_size=2)
    waveforms, targets, indices = next(iter(loader))
    assert waveforms.shape == (2, 1000) and targets.tolist() == [1, 0] and indices.tolist() == [0, 1]


def make_trials(n_bonafide: int, n_spoof: int) -> list[Trial]:
    labels = ["bonafide"] * n_bonafide + ["spoof"] * n_spoof
    order = np.random.default_rng(0).permutation(len(labels))
    return [Trial(f"u{i}", Path(f"u{i}.flac"), labels[j]) for i, j in enumerate(order)]


def test_class_counts():
    assert class_counts(make_trials(3, 17)) == (17, 3)
    assert class_counts([]) == (0, 0)


def test_subsample_is_seeded_stratified_and_ordered():
    trials = make_trials(100, 900)
    picked = subsample(trials, 50, seed=1)
    assert class_counts(picked) == (45, 5)
    assert picked == subsample(trials, 50, seed=1) and picked != subsample(trials, 50, seed=2)
    positions = [trials.index(t) for t in picked]
    assert positions == sorted(positions) and len(set(positions)) == 50


def test_subsample_edge_cases():
    trials = make_trials(1, 99)
    assert class_counts(subsample(trials, 10, seed=0)) == (9, 1)  # the rare class is kept
    assert subsample(trials, 500, seed=0) == trials
    assert subsample(trials, 0, seed=0) == []
