"""`plastispoof metrics` end to end, through a real process so the exit codes and stderr are the user's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from plastispoof.metrics import compute_eer

# (utt_id, attack, key, score): A07 well separated, A08 overlapping the bona fide scores
TRIALS = [
    ("LA_E_0000001", "-", "bonafide", 2.1), ("LA_E_0000002", "-", "bonafide", 1.4),
    ("LA_E_0000003", "-", "bonafide", 0.3), ("LA_E_0000004", "-", "bonafide", 2.8),
    ("LA_E_0000005", "A07", "spoof", -3.0), ("LA_E_0000006", "A07", "spoof", -2.2),
    ("LA_E_0000007", "A08", "spoof", 0.9), ("LA_E_0000008", "A08", "spoof", -0.4),
]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    protocol = tmp_path / "ASVspoof2019.LA.cm.eval.trl.txt"
    protocol.write_text("".join(f"LA_00{i:02d} {utt} - {attack} {key}\n"
                                for i, (utt, attack, key, _) in enumerate(TRIALS)))
    scores = tmp_path / "scores.txt"
    scores.write_text("".join(f"{utt} {score}\n" for utt, _, _, score in TRIALS))
    partial = tmp_path / "partial.txt"
    partial.write_text("".join(f"{utt} {score}\n" for utt, _, _, score in TRIALS[:6]))
    asv = tmp_path / "asv.txt"
    asv.write_text("LA_0001 target 2.0\nLA_0001 target 3.0\nLA_0002 nontarget -1.0\nLA_0002 nontarget 0.5\n"
                   "LA_0003 spoof 1.5\nLA_0003 spoof -0.5\n")
    return {"protocol": protocol, "scores": scores, "partial": partial, "asv": asv}


def plastispoof(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "plastispoof.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def expected_eer(*attacks: str) -> float:
    bonafide = [score for _, _, key, score in TRIALS if key == "bonafide"]
    spoof = [score for _, attack, key, score in TRIALS if key == "spoof" and (not attacks or attack in attacks)]
    return compute_eer(bonafide, spoof)[0]


def test_metrics_prints_a_table(files):
    result = plastispoof("metrics", "--scores", files["scores"], "--protocol", files["protocol"])
    assert result.returncode == 0, result.stderr
    assert f"{100 * expected_eer():.2f} %" in result.stdout
    assert "min t-DCF" in result.stdout and "A07" in result.stdout and "A08" in result.stdout


def test_metrics_json_follows_the_contract(files):
    result = plastispoof("metrics", "--scores", files["scores"], "--protocol", files["protocol"],
                         "--asv-scores", files["asv"], "--tdcf-form", "2021", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["eer"] == pytest.approx(expected_eer())
    assert report["per_attack"] == pytest.approx({"A07": expected_eer("A07"), "A08": expected_eer("A08")})
    assert (report["n_bonafide"], report["n_spoof"]) == (4, 4)
    assert (report["tdcf_form"], report["tdcf_asv_source"]) == ("2021", "asv-scores")
    assert {"threshold", "min_tdcf", "min_dcf", "act_dcf", "cllr"} <= report.keys()


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_metrics_with_unscored_trials_exits_2_naming_the_count(files):
    result = plastispoof("metrics", "--scores", files["partial"], "--protocol", files["protocol"])
    assert_one_line_error(result, "2 of 8 protocol trials have no score", "LA_E_0000007")


def test_metrics_with_unknown_protocol_format_exits_2(files):
    result = plastispoof("metrics", "--scores", files["scores"], "--protocol", files["protocol"],
                         "--format", "no-such-format")
    assert_one_line_error(result, "no-such-format")


def test_metrics_with_unknown_tdcf_form_exits_2(files):
    result = plastispoof("metrics", "--scores", files["scores"], "--protocol", files["protocol"],
                         "--tdcf-form", "2020")
    assert_one_line_error(result, "2020")


def test_metrics_ties_option_reaches_the_report(tmp_path):
    # bona fide 1, 2, 2, 3 and spoof 0, 2, 2, 1.5: grouped EER 37.5 % at 1.5, official 50 % at 2
    rows = [("LA_E_1", "bonafide", 1.0), ("LA_E_2", "bonafide", 2.0), ("LA_E_3", "bonafide", 2.0),
            ("LA_E_4", "bonafide", 3.0), ("LA_E_5", "spoof", 0.0), ("LA_E_6", "spoof", 2.0),
            ("LA_E_7", "spoof", 2.0), ("LA_E_8", "spoof", 1.5)]
    protocol, scores = tmp_path / "protocol.txt", tmp_path / "scores.txt"
    protocol.write_text("".join(f"LA_0001 {utt} - {'-' if key == 'bonafide' else 'A07'} {key}\n"
                                for utt, key, _ in rows))
    scores.write_text("".join(f"{utt} {score}\n" for utt, _, score in rows))
    found = {}
    for ties in ("grouped", "official"):
        result = plastispoof("metrics", "--scores", scores, "--protocol", protocol, "--ties", ties, "--json")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        found[ties] = (report["ties"], report["eer"], report["threshold"])
    assert found == {"grouped": ("grouped", 0.375, 1.5), "official": ("official", 0.5, 2.0)}
    assert_one_line_error(plastispoof("metrics", "--scores", scores, "--protocol", protocol, "--ties", "random"),
                          "tie rule")
