"""EER, t-DCF, DCF and Cllr against hand-computed cases, a brute-force sweep, and invariance properties."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plastispoof.data.trials import Trial
from plastispoof.errors import InputError
from plastispoof.metrics import (
    POOLED_ASV_RATES,
    AsvScores,
    act_dcf,
    asv_error_rates,
    cllr,
    compute_eer,
    compute_report,
    det_curve,
    format_report,
    min_dcf,
    min_tdcf,
)
from plastispoof.score_files import read_asv_scores, read_scores

# ASVspoof cost model, written out again from the evaluation plans
PSPOOF, PTAR, PNON = 0.05, 0.95 * 0.99, 0.95 * 0.01


def brute_force_eer(bonafide, spoof):
    """Threshold sweep by direct counting: accept as bona fide when score > t, t in {below all} + scores.

    Rates are count / total in floating point and the first closest point wins, as in the official scorer."""
    candidates = [-math.inf] + sorted(set(bonafide) | set(spoof))
    best = None
    for t in candidates:
        frr = sum(s <= t for s in bonafide) / len(bonafide)
        far = sum(s > t for s in spoof) / len(spoof)
        if best is None or abs(frr - far) < best[0]:
            best = (abs(frr - far), (frr + far) / 2)
    return best[1]


def brute_force_tdcf(bonafide, spoof, pfa_asv, pmiss_asv, pfa_spoof_asv, form):
    if form == "2019":
        c0 = 0.0
        c1 = PTAR * (1 - pmiss_asv) - PNON * 10 * pfa_asv
        c2 = 10 * PSPOOF * pfa_spoof_asv
        norm = min(c1, c2)
    else:
        c0 = PTAR * pmiss_asv + PNON * 10 * pfa_asv
        c1 = PTAR - c0
        c2 = PSPOOF * 10 * pfa_spoof_asv
        norm = c0 + min(c1, c2)
    costs = []
    for t in [-math.inf] + sorted(set(bonafide) | set(spoof)):
        pmiss = sum(s <= t for s in bonafide) / len(bonafide)
        pfa = sum(s > t for s in spoof) / len(spoof)
        costs.append((c0 + c1 * pmiss + c2 * pfa) / norm)
    return min(costs)


# --- EER -------------------------------------------------------------------------------------------------------


def test_eer_four_by_four_with_one_overlap():
    # spoof 0.5 beats bona fide 0.4: at t = 0.4 one of four of each class is wrong
    assert compute_eer([0.4, 0.7, 0.8, 0.9], [0.1, 0.2, 0.3, 0.5]) == (0.25, 0.4)


def test_eer_where_rates_do_not_meet_takes_the_mean_at_the_closest_point():
    # closest point t = 0.4: frr 1/3 (0.2 rejected), far 2/5 (0.5, 0.65 accepted)
    eer, threshold = compute_eer([0.2, 0.6, 0.7], [0.1, 0.3, 0.4, 0.5, 0.65])
    assert eer == pytest.approx((1 / 3 + 2 / 5) / 2)
    assert threshold == 0.4


def test_eer_with_tied_scores_across_classes():
    # t = 1.5: frr 1/4 (score 1), far 2/4 (both spoof 2s); equal scores are one threshold
    eer, threshold = compute_eer([1, 2, 2, 3], [0, 2, 2, 1.5])
    assert eer == pytest.approx(0.375)
    assert threshold == 1.5


def test_det_curve_is_monotone_with_trivial_end_points():
    rng = np.random.default_rng(0)
    frr, far, thresholds = det_curve(rng.normal(1, 1, 50), rng.normal(0, 1, 70))
    assert (frr[0], far[0], frr[-1], far[-1]) == (0.0, 1.0, 1.0, 0.0)
    assert np.all(np.diff(frr) >= 0) and np.all(np.diff(far) <= 0) and np.all(np.diff(thresholds) > 0)


def test_eer_rejects_empty_and_non_finite_scores():
    with pytest.raises(InputError, match="no spoof scores"):
        compute_eer([1.0], [])
    with pytest.raises(InputError, match="NaN"):
        compute_eer([1.0, float("nan")], [0.0])


score_lists = st.lists(st.integers(-40, 40).map(float), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(score_lists, score_lists)
def test_eer_matches_brute_force_sweep(bonafide, spoof):
    assert compute_eer(bonafide, spoof)[0] == brute_force_eer(bonafide, spoof)


def test_eer_matches_brute_force_sweep_on_continuous_scores():
    rng = np.random.default_rng(5)
    for _ in range(20):
        bonafide, spoof = rng.normal(1, 1.5, rng.integers(2, 60)), rng.normal(-1, 2, rng.integers(2, 60))
        assert compute_eer(bonafide, spoof)[0] == brute_force_eer(bonafide.tolist(), spoof.tolist())


@settings(max_examples=60, deadline=None)
@given(score_lists, score_lists, st.floats(0.1, 10), st.floats(-100, 100))
def test_eer_unchanged_by_strictly_increasing_transforms(bonafide, spoof, scale, shift):
    eer = compute_eer(bonafide, spoof)[0]
    for transform in (lambda x: scale * x + shift, np.exp, lambda x: x ** 3):
        assert compute_eer(transform(np.array(bonafide)), transform(np.array(spoof)))[0] == eer


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=20), st.lists(st.floats(2, 3), min_size=1, max_size=20))
def test_perfectly_separated_classes_give_eer_zero_and_swapped_one(low, high):
    assert compute_eer(high, low)[0] == 0.0
    assert compute_eer(low, high)[0] == 1.0


@settings(max_examples=60, deadline=None)
@given(score_lists, score_lists, st.randoms(use_true_random=False))
def test_ties_are_deterministic_under_any_input_order(bonafide, spoof, rnd):
    shuffled_bonafide, shuffled_spoof = bonafide[:], spoof[:]
    rnd.shuffle(shuffled_bonafide)
    rnd.shuffle(shuffled_spoof)
    assert compute_eer(shuffled_bonafide, shuffled_spoof) == compute_eer(bonafide, spoof)


# --- tie rules: grouped (default) and official ------------------------------------------------------------------

def official_scorer_eer(target_scores, nontarget_scores):
    """The official ASVspoof 2019/2021 EER, transcribed step by step from its published procedure
    (compute_det_curve + compute_eer): one stable sort over all scores, cumulative counts, closest point."""
    n_scores = target_scores.size + nontarget_scores.size
    all_scores = np.concatenate((target_scores, nontarget_scores))
    labels = np.concatenate((np.ones(target_scores.size), np.zeros(nontarget_scores.size)))
    indices = np.argsort(all_scores, kind="mergesort")
    labels = labels[indices]
    tar_trial_sums = np.cumsum(labels)
    nontarget_trial_sums = nontarget_scores.size - (np.arange(1, n_scores + 1) - tar_trial_sums)
    frr = np.concatenate((np.atleast_1d(0), tar_trial_sums / target_scores.size))
    far = np.concatenate((np.atleast_1d(1), nontarget_trial_sums / nontarget_scores.size))
    thresholds = np.concatenate((np.atleast_1d(all_scores[indices[0]] - 0.001), all_scores[indices]))
    min_index = np.argmin(np.abs(frr - far))
    return np.mean((frr[min_index], far[min_index])), thresholds[min_index]


def tied_score_files(tmp_path: Path, seed: int, order_seed: int | None = None) -> tuple[Path, Path, dict]:
    """A protocol and a score file with many ties across the classes (scores on a coarse grid)."""
    rng = np.random.default_rng(seed)
    rows = [(f"LA_E_{i:07d}", "-", "bonafide", float(rng.integers(2, 9)) / 4) for i in range(int(rng.integers(5, 40)))]
    rows += [(f"LA_E_{100 + i:07d}", f"A0{7 + i % 3}", "spoof", float(rng.integers(0, 7)) / 4)
             for i in range(int(rng.integers(5, 60)))]
    if order_seed is not None:
        rows = [rows[i] for i in np.random.default_rng(order_seed).permutation(len(rows))]
    protocol, scores = tmp_path / f"protocol-{seed}-{order_seed}.txt", tmp_path / f"scores-{seed}-{order_seed}.txt"
    protocol.write_text("".join(f"LA_0001 {utt} - {attack} {key}\n" for utt, attack, key, _ in rows))
    scores.write_text("".join(f"{utt} {score}\n" for utt, _, _, score in rows))
    return protocol, scores, {"rows": rows}


@pytest.mark.parametrize("seed", range(12))
def test_official_ties_reproduce_the_official_scorer_digit_for_digit(tmp_path, seed):
    from plastispoof.score_files import score_protocol

    protocol, scores, made = tied_score_files(tmp_path, seed)
    rows = made["rows"]
    # the official scripts read the score file's columns as float64 arrays, bona fide (target) first
    target = np.loadtxt(scores, usecols=1)[[key == "bonafide" for _, _, key, _ in rows]]
    nontarget = np.loadtxt(scores, usecols=1)[[key == "spoof" for _, _, key, _ in rows]]
    assert len(set(target) & set(nontarget)) > 0  # the case where the rules can differ
    eer, threshold = official_scorer_eer(target, nontarget)
    report = score_protocol(scores, protocol, ties="official")
    assert report["ties"] == "official"
    assert report["eer"] == eer and report["threshold"] == threshold  # exact, not approx
    for attack in ("A07", "A08", "A09"):
        spoof = np.array([score for _, a, key, score in rows if a == attack])
        assert report["per_attack"][attack] == official_scorer_eer(target, spoof)[0]


def test_the_rules_differ_on_ties_and_agree_without_them():
    bonafide, spoof = np.array([1.0, 2.0, 2.0, 3.0]), np.array([0.0, 2.0, 2.0, 1.5])
    assert compute_eer(bonafide, spoof) == (0.375, 1.5)
    assert compute_eer(bonafide, spoof, ties="official") == official_scorer_eer(bonafide, spoof) == (0.5, 2.0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        untied_bonafide, untied_spoof = rng.normal(1, 1, 30), rng.normal(0, 1, 50)
        assert compute_eer(untied_bonafide, untied_spoof) == compute_eer(untied_bonafide, untied_spoof, "official")
        assert min_tdcf(untied_bonafide, untied_spoof) == min_tdcf(untied_bonafide, untied_spoof, ties="official")


@pytest.mark.parametrize("seed", range(6))
def test_grouped_ties_do_not_depend_on_the_order_of_the_files(tmp_path, seed):
    from plastispoof.score_files import score_protocol

    protocol, scores, _ = tied_score_files(tmp_path, seed)
    reference = score_protocol(scores, protocol)
    assert reference["ties"] == "grouped"
    cllr = reference.pop("cllr")  # a mean: summed in another order it may differ in the last bit

    def same(report):
        assert report.pop("cllr") == pytest.approx(cllr, rel=1e-12)
        assert report == reference  # every sweep figure exactly

    for order_seed in range(4):
        shuffled_protocol, shuffled_scores, _ = tied_score_files(tmp_path, seed, order_seed)
        same(score_protocol(shuffled_scores, shuffled_protocol))
        same(score_protocol(shuffled_scores, protocol))  # the score file's order alone


def test_unknown_tie_rule_is_an_input_error():
    with pytest.raises(InputError, match="tie rule"):
        compute_eer([1.0], [0.0], ties="random")


# --- t-DCF -----------------------------------------------------------------------------------------------------

# ASV with EER threshold 0.5: nontarget 1.0 accepted (Pfa 1/4), no target missed, spoofs 1.5, 2.5, 3.5 accepted
ASV = AsvScores(target=np.array([2.0, 3.0, 4.0, 0.5]), nontarget=np.array([-2.0, -1.0, 0.0, 1.0]),
                spoof=np.array([1.5, 2.5, -0.5, 3.5]))
# best CM operating point t = 0.65: one of four bona fide rejected, no spoof accepted
CM_BONAFIDE = [0.4, 0.7, 0.8, 0.9]
CM_SPOOF = [0.1, 0.2, 0.3, 0.45, 0.5, 0.55, 0.6, 0.65]


def test_asv_rates_at_the_asv_eer_threshold():
    rates = asv_error_rates(ASV)
    assert (rates.pfa, rates.pmiss, rates.pfa_spoof) == (0.25, 0.0, 0.75)


def test_min_tdcf_2019_by_hand():
    c1 = PTAR * 1 - PNON * 10 * 0.25   # 0.91675
    c2 = 10 * PSPOOF * 0.75            # 0.375 = min(C1, C2)
    # at t = 0.65: (C1 * 1/4 + C2 * 0) / C2 = 0.6112, below t = 0.3's 5/8 spoofs accepted = 0.625
    assert min_tdcf(CM_BONAFIDE, CM_SPOOF, asv=ASV, form="2019") == pytest.approx(c1 * 0.25 / c2)


def test_min_tdcf_2021_by_hand():
    c0 = PNON * 10 * 0.25              # ASV alone: only its false alarms cost
    c1 = PTAR - c0
    c2 = PSPOOF * 10 * 0.75
    assert min_tdcf(CM_BONAFIDE, CM_SPOOF, asv=ASV, form="2021") == pytest.approx((c0 + c1 * 0.25) / (c0 + c2))


def test_min_tdcf_without_asv_uses_the_documented_pooled_rates():
    for form in ("2019", "2021"):
        expected = brute_force_tdcf(CM_BONAFIDE, CM_SPOOF, 0.0188, 0.0188, 0.461, form)
        assert min_tdcf(CM_BONAFIDE, CM_SPOOF, form=form) == pytest.approx(expected, abs=2e-3)
    assert (POOLED_ASV_RATES.pfa, POOLED_ASV_RATES.pmiss, POOLED_ASV_RATES.pfa_spoof) == pytest.approx(
        (0.0188, 0.0188, 0.461), abs=5e-4)


@settings(max_examples=40, deadline=None)
@given(score_lists, score_lists, st.sampled_from(["2019", "2021"]))
def test_min_tdcf_matches_brute_force_and_never_exceeds_a_trivial_cm(bonafide, spoof, form):
    rates = asv_error_rates(ASV)
    value = min_tdcf(bonafide, spoof, asv=ASV, form=form)
    assert value == pytest.approx(brute_force_tdcf(bonafide, spoof, rates.pfa, rates.pmiss, rates.pfa_spoof, form))
    assert 0.0 <= value <= 1.0 + 1e-12


def test_min_tdcf_rejects_unknown_form_and_unusable_asv():
    with pytest.raises(InputError, match="t-DCF form"):
        min_tdcf(CM_BONAFIDE, CM_SPOOF, form="2020")
    # an ASV scoring targets below impostors misses 9 of 10 targets at its EER threshold: C1 < 0
    inverted = AsvScores(target=-np.arange(1.0, 11.0), nontarget=np.arange(1.0, 5.0), spoof=ASV.spoof)
    with pytest.raises(InputError, match="t-DCF weights"):
        min_tdcf(CM_BONAFIDE, CM_SPOOF, asv=inverted)


# --- ASVspoof 5 DCFs and Cllr ----------------------------------------------------------------------------------


def test_min_dcf_perfect_trivial_and_mixed():
    assert min_dcf([2.0, 3.0], [0.0, 1.0]) == 0.0
    assert min_dcf([1.0, 1.0], [1.0, 1.0]) == pytest.approx(1.0)  # only accept-all / reject-all exist
    # best point t = 0.65 above: (0.95 * 1/4 + 0) / 0.5
    assert min_dcf(CM_BONAFIDE, CM_SPOOF) == pytest.approx(0.95 * 0.25 / 0.5)


def test_act_dcf_uses_the_bayes_threshold_for_llrs():
    threshold = -math.log(1.9)
    assert act_dcf([5.0, 6.0], [-5.0, -6.0]) == 0.0
    # scores at 0 > -ln 1.9: every spoof accepted -> 0.05 * 10 * 1 / 0.5
    assert act_dcf([0.0], [0.0]) == pytest.approx(1.0)
    # just below the threshold every bona fide is rejected -> 0.95 / 0.5
    assert act_dcf([threshold - 1e-9], [-9.0]) == pytest.approx(1.9)
    assert act_dcf([0.2], [0.1], threshold=0.15) == 0.0


def test_cllr_perfect_uninformative_and_wrong():
    rng = np.random.default_rng(1)
    assert cllr([20.0, 30.0], [-20.0, -30.0]) < 1e-6
    assert cllr(rng.normal(0, 0.01, 500), rng.normal(0, 0.01, 500)) == pytest.approx(1.0, abs=0.01)
    assert cllr([-3.0], [3.0]) > 1.0
    assert math.isfinite(cllr([1e4], [-1e4])) and math.isfinite(cllr([-1e4], [1e4]))


# --- score files -----------------------------------------------------------------------------------------------


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def test_read_scores_accepts_all_three_shapes(tmp_path):
    ours = write(tmp_path, "ours.txt", "LA_E_1 0.5\r\n\nLA_E_2 -1.25\r\n")
    aasist = write(tmp_path, "aasist.txt", "LA_E_1 - bonafide 0.5\nLA_E_2 A07 spoof -1.25\n")
    asv5 = write(tmp_path, "asv5.tsv", "filename\tcm-score\nLA_E_1\t0.5\nLA_E_2\t-1.25\n")
    for path in (ours, aasist, asv5):
        assert read_scores(path) == {"LA_E_1": 0.5, "LA_E_2": -1.25}


@pytest.mark.parametrize(("text", "message"), [
    ("a 0.1\nb nan\n", "line 2 score 'nan'"),
    ("a 0.1\nb 0.2\na 0.3\n", "line 3 repeats a of line 1"),
    ("a 0.1\nb spoof 0.2\n", "line 2 has 3 fields"),
    ("a 0.1\nfilename cm-score\n", "line 2 score 'cm-score'"),
    ("\n\n", "holds no scores"),
])
def test_read_scores_reports_bad_lines(tmp_path, text, message):
    with pytest.raises(InputError, match=message):
        read_scores(write(tmp_path, "s.txt", text))


def test_read_scores_counts_every_bad_line(tmp_path):
    with pytest.raises(InputError, match=r"3 bad line\(s\), e.g. line 1"):
        read_scores(write(tmp_path, "s.txt", "a x\nb y\nc 1.0\nd inf\n"))


def test_read_scores_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_scores(tmp_path / "nope.txt")


def test_read_asv_scores(tmp_path):
    asv = read_asv_scores(write(tmp_path, "asv.txt", "LA_0001 target 2.0\nLA_0001 nontarget -1\nLA_0002 spoof 1.5\n"
                                                     "LA_0002 target 3\n"))
    assert asv.target.tolist() == [2.0, 3.0] and asv.nontarget.tolist() == [-1.0] and asv.spoof.tolist() == [1.5]
    with pytest.raises(InputError, match="no spoof trials"):
        read_asv_scores(write(tmp_path, "a.txt", "s target 1\ns nontarget 0\n"))
    with pytest.raises(InputError, match="line 2 has no key"):
        read_asv_scores(write(tmp_path, "b.txt", "s target 1\ns impostor 0\n"))


# --- report ----------------------------------------------------------------------------------------------------


def make_trials(codecs: bool = False) -> tuple[list[Trial], dict[str, float]]:
    rng = np.random.default_rng(3)
    trials, scores = [], {}
    for i in range(40):
        label, attack = ("bonafide", "-") if i % 2 == 0 else ("spoof", "A07" if i % 4 == 1 else "A08")
        meta = {"codec": "alaw" if i < 20 else "none"} if codecs else {}
        trials.append(Trial(f"utt{i:02d}", Path(f"utt{i:02d}.flac"), label, attack=attack, meta=meta))
        # A07 is easy, A08 overlaps the bona fide scores
        scores[f"utt{i:02d}"] = float(rng.normal({"-": 2.0, "A07": -3.0, "A08": 1.5}[attack], 1.0))
    return trials, scores


def test_report_contract_keys_and_consistency():
    trials, scores = make_trials()
    report = compute_report(trials, scores)
    json.dumps(report, allow_nan=False)
    assert {"eer", "threshold", "n_bonafide", "n_spoof", "min_tdcf", "tdcf_form", "tdcf_asv_source", "per_attack",
            "min_dcf", "act_dcf", "cllr"} <= report.keys()
    assert (report["n_bonafide"], report["n_spoof"]) == (20, 20)
    assert report["tdcf_asv_source"] == "pooled-fallback" and report["tdcf_form"] == "2019"
    bonafide = [scores[t.utt_id] for t in trials if t.label == "bonafide"]
    a07 = [scores[t.utt_id] for t in trials if t.attack == "A07"]
    assert report["per_attack"]["A07"] == compute_eer(bonafide, a07)[0]
    assert report["per_attack"]["A07"] < report["per_attack"]["A08"]
    assert set(report["per_attack"]) == {"A07", "A08"}


def test_report_with_asv_scores_and_2021_form():
    trials, scores = make_trials()
    report = compute_report(trials, scores, asv=ASV, tdcf_form="2021")
    assert report["tdcf_asv_source"] == "asv-scores" and report["tdcf_form"] == "2021"
    assert report["asv_rates"] == {"pfa": 0.25, "pmiss": 0.0, "pfa_spoof": 0.75}


def test_report_breaks_down_by_a_metadata_column():
    trials, scores = make_trials(codecs=True)
    report = compute_report(trials, scores, breakdown=("attack", "codec"))
    assert set(report["per_codec"]) == {"alaw", "none"}
    alaw = [t for t in trials if t.meta["codec"] == "alaw"]
    expected = compute_eer([scores[t.utt_id] for t in alaw if t.label == "bonafide"],
                           [scores[t.utt_id] for t in alaw if t.label == "spoof"])[0]
    assert report["per_codec"]["alaw"] == expected
    assert "per codec" in format_report(report) and "alaw" in format_report(report)
    with pytest.raises(InputError, match="'vocoder'"):
        compute_report(trials, scores, breakdown=("vocoder",))


def test_report_names_missing_and_extra_ids():
    trials, scores = make_trials()
    partial = {utt: s for utt, s in scores.items() if utt not in ("utt03", "utt07")}
    with pytest.raises(InputError, match="2 of 40 protocol trials have no score, e.g. utt03, utt07"):
        compute_report(trials, partial)
    with pytest.raises(InputError, match="1 of 41 scores are for utterances not in the protocol, e.g. ghost"):
        compute_report(trials, {**scores, "ghost": 0.0})


def test_report_needs_both_classes_and_a_known_form():
    trials, scores = make_trials()
    bonafide_only = [t for t in trials if t.label == "bonafide"]
    with pytest.raises(InputError, match="all bona fide"):
        compute_report(bonafide_only, {t.utt_id: scores[t.utt_id] for t in bonafide_only})
    with pytest.raises(InputError, match="t-DCF form"):
        compute_report(trials, scores, tdcf_form="2017")


def test_format_report_shows_percent_and_attacks():
    trials, scores = make_trials()
    report = compute_report(trials, scores)
    text = format_report(report)
    assert f"{100 * report['eer']:.2f} %" in text
    assert f"{report['min_tdcf']:.4f}" in text
    assert "A07" in text and "A08" in text and "20 bona fide, 20 spoof" in text
