"""The ``plastispoof`` command. Each verb is a thin call into the Python API; bad input exits 2 with one line."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import List, Optional

import typer

from plastispoof.errors import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Spoofed-speech detection with capacity-adaptive training.")
reproduce_app = typer.Typer(no_args_is_help=True, help="Reproduce a paper's table or figure.")
app.add_typer(reproduce_app, name="reproduce")

_DEBUG = {"on": False}


def _version(value: bool) -> None:
    if value:
        from plastispoof import __version__

        typer.echo(f"plastispoof {__version__}")
        raise typer.Exit()


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="show tracebacks for bad input (anywhere on the line)"),
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    _DEBUG["on"] = _DEBUG["on"] or debug


# An override: a dotted key, "=", a value (``--set train.lr=1e-4``).
_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


def normalised_argv(argv: list[str]) -> list[str]:
    """The command line as typer should see it: ``--debug`` taken out wherever it stands (it is the root's
    option), and each ``key=value`` that follows a ``--set`` given its own ``--set`` (``--set a=1 b=2``).

    >>> normalised_argv(["train", "c.yaml", "--set", "a=1", "b.c=2", "--debug", "--resume"])
    ['--debug', 'train', 'c.yaml', '--set', 'a=1', '--set', 'b.c=2', '--resume']
    """
    debug = "--debug" in argv
    out: list[str] = []
    in_set = False
    for arg in argv:
        if arg == "--debug":
            continue
        if in_set and _OVERRIDE.match(arg) and out and out[-1] != "--set":
            out.append("--set")
        elif arg != "--set" and not _OVERRIDE.match(arg):
            in_set = False
        if arg == "--set":
            in_set = True
        out.append(arg)
    return (["--debug"] if debug else []) + out


def _echo_once(text: str) -> None:
    """Print a verb's report once: under torchrun every rank runs the verb and rank 0 reports."""
    from plastispoof.scale.sharding import is_main_rank

    if is_main_rank():
        typer.echo(text)


def _csv(value: Optional[str]) -> Optional[list[str]]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _seeds(value: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(seed) for seed in _csv(value) or [])
    except ValueError:
        raise InputError(f"--seeds takes whole numbers separated by commas, e.g. 42,43,44; got {value!r}") from None
    if not seeds:
        raise InputError("--seeds names no seed")
    return seeds


@app.command()
def synth(out: Path = typer.Option(..., help="output directory"),
          profile: str = typer.Option("tiny", help="tiny | demo | full"),
          seed: int = typer.Option(42),
          bonafide: Optional[Path] = typer.Option(None, help="real recordings (speaker = first sub-folder): "
                                                  "write a copy-synthesis + TTS corpus from them"),
          recipe: Optional[str] = typer.Option(None, help="open-speech: the same from Debian's Asterisk prompts"),
          attacks: Optional[str] = typer.Option(None, help="copy-synthesis families or attack IDs, e.g. "
                                                "world,griffinlim,lpc,sinusoidal,codec (default: all)"),
          tts: Optional[str] = typer.Option(None, help="TTS engines: espeak-ng,festival,flite"),
          transcripts: Optional[Path] = typer.Option(None, help="CSV path,text for --bonafide"),
          language: str = typer.Option("en", help="language of --bonafide: en, fr, es, it or ru"),
          max_utterances: Optional[int] = typer.Option(None, help="bona fide recordings per speaker at most"),
          split: str = typer.Option("text", help="text | speaker"),
          adaptation: Optional[float] = typer.Option(None, help="embedded corpus: also write the continual-"
                                                     "adaptation split, this share of the eval speakers adapting "
                                                     "to the unseen attacks, the rest held out (e.g. 0.25)"),
          force: bool = typer.Option(False, "--force", help="replace a corpus of another profile or seed in --out")
          ) -> None:
    """Write the embedded corpus, or with --bonafide / --recipe a spoof corpus built from real recordings
    (FLAC + ASVspoof-2019-LA-style protocols + leave-one-family-out protocols + corpus.json)."""
    from plastispoof.data.synth import synth as write_any_corpus

    typer.echo(write_any_corpus(out, profile=profile, seed=seed, bonafide=bonafide, recipe=recipe,
                                attacks=_csv(attacks), tts=_csv(tts), transcripts=transcripts, language=language,
                                max_utterances=max_utterances, split=split, adaptation=adaptation, force=force,
                                note=lambda text: typer.echo(text, err=True)))


@app.command()
def prepare(dataset: str = typer.Argument(..., help="corpus reader: asv19-la, asv19-pa, asv21-la, asv21-df, asv5, "
                                                      "in-the-wild, for-*, csv, synthetic"),
            root: Path = typer.Option(..., help="corpus root"),
            check_audio: bool = typer.Option(False, "--check-audio", help="decode every file: rates, durations, "
                                                                          "silent and corrupt files"),
            jobs: Optional[int] = typer.Option(None, help="decoding processes (default: every core)"),
            out: Optional[Path] = typer.Option(None, help="the Parquet manifest to write"),
            subsets: Optional[str] = typer.Option(None, help="comma list (default: the corpus' every subset)"),
            expect: Optional[str] = typer.Option(None, help="rows per subset instead of the published counts, "
                                                            "e.g. train=100,dev=50"),
            drop_unusable: bool = typer.Option(False, "--drop-unusable", help="leave corrupt and silent files "
                                                                              "out of the manifest"),
            shards: Optional[Path] = typer.Option(None, help="also write WebDataset tar shards here (data.shards)"),
            shard_size: int = typer.Option(1000, help="utterances per shard")) -> None:
    """Check a corpus against its published counts (missing, extra, unreadable files; label x attack table) and
    write a Parquet manifest that train, evaluate, calibrate and score read (--dataset manifest --root FILE)."""
    from plastispoof.data.prepare import format_check, parse_expected, prepare_corpus, unusable_line

    check = prepare_corpus(dataset, root, subsets=_csv(subsets), expected=parse_expected(expect),
                           check_audio=check_audio, jobs=jobs, out=out, drop_unusable=drop_unusable,
                           shards=shards, shard_size=shard_size)
    typer.echo(format_check(check))
    if check.unusable and not drop_unusable and (out is not None or shards is not None):
        raise InputError(unusable_line(check))


@app.command()
def train(config: Path, set_: List[str] = typer.Option([], "--set", help="override, e.g. train.lr=1e-4"),
          resume: bool = typer.Option(False, help="continue a killed run from its last checkpoint")) -> None:
    """Train a model with a strategy from a YAML config."""
    from plastispoof.config import load_config
    from plastispoof.training import train as run_training

    run_dir = run_training(load_config(config, set_), resume=resume)
    typer.echo(f"run directory: {run_dir}")


@app.command("import")
def import_weights(model: str = typer.Argument(..., help="aasist | aasist-l (official .pth), or a model with an SSL "
                                                          "encoder (ssl-nes2net, ssl-aasist, wav2vec2, ...)"),
                   weights: Path = typer.Option(..., help="official .pth state_dict, or a Hugging Face folder"),
                   out: Optional[Path] = typer.Option(None, help="run directory (default runs/<model>-imported)"),
                   num_samples: Optional[int] = typer.Option(None, help="input length stored in the run"),
                   set_: List[str] = typer.Option([], "--set", help="model arguments, e.g. "
                                                  "model.args.frontend.aggregation=weighted")) -> None:
    """Turn published weights into a run directory that every strategy can start from (baseline_run)."""
    from plastispoof.pretrained import describe_import, import_checkpoint

    typer.echo(describe_import(import_checkpoint(model, weights, out, set_, num_samples)))


@app.command()
def evaluate(run: Path, dataset: str = typer.Option(..., help="protocol reader name"),
             root: Path = typer.Option(..., help="corpus root"), subset: str = typer.Option("eval"),
             full: bool = typer.Option(False, "--full", help="score whole files as `score` does (mean over windows); "
                                                             "default: the first num_samples (ASVspoof convention)")
             ) -> None:
    """Score a dataset with a trained run: score file, metrics, DET curve and histograms."""
    from plastispoof.evaluate import evaluate_run, format_metrics

    report = evaluate_run(run, dataset=dataset, root=root, subset=subset, full=full)
    _echo_once(format_metrics(report))  # under torchrun every rank scores a shard; rank 0 reports


@app.command()
def score(paths: List[Path], run: Optional[Path] = typer.Option(None, help="run directory"),
          shipped: Optional[str] = typer.Option(None, help="a detector shipped in the package (plastispoof models); "
                                                           "the default when no other model option is given"),
          model: Optional[str] = typer.Option(None, help="model name for foreign weights, e.g. aasist"),
          weights: Optional[Path] = typer.Option(None, help="foreign .pth state_dict"),
          calibration: Optional[Path] = typer.Option(None, help="calibration.json (plastispoof calibrate): adds llr "
                                                                "and p_bonafide; a run's own one is used by default"),
          prior: float = typer.Option(0.5, help="prior probability of bona fide for p_bonafide and bayes"),
          operating_point: Optional[str] = typer.Option(None, help="eer (dev EER threshold) | fpr=0.01 (at most 1 % "
                                                                   "of dev spoofs accepted) | bayes (llr > -logit "
                                                                   "prior)"),
          segments: bool = typer.Option(False, "--segments", help="also a timeline: score and llr per window"),
          plot: Optional[Path] = typer.Option(None, help="folder for one timeline PNG per file"),
          onnx: Optional[Path] = typer.Option(None, help="an ONNX export (plastispoof export): scored with "
                                                         "onnxruntime, without PyTorch"),
          as_json: bool = typer.Option(False, "--json", help="JSON Lines: one object per file, as each is done"),
          precision: str = typer.Option("float32", help="float32 | bfloat16: faster on CPUs with native bfloat16 "
                                                        "(AVX-512 BF16, AMX) and on GPUs; scores move by about "
                                                        "0.01, at most 0.1 (docs/decisions.md)"),
          max_seconds: float = typer.Option(600.0, help="refuse files longer than this many seconds (0: no "
                                                        "limit)"),
          ray: Optional[str] = typer.Option(None, "--ray", help="score on Ray Data: local (start Ray here) | auto "
                                            "(the cluster `ray start` made here) | HOST:PORT; needs --out"),
          out: Optional[Path] = typer.Option(None, help="with --ray: the Parquet folder to write"),
          actors: int = typer.Option(2, help="with --ray: scoring actors (one model each)"),
          gpus_per_actor: float = typer.Option(0.0, help="with --ray: GPUs per actor (e.g. 1, or 0.5 to share)"),
          batch_size: Optional[int] = typer.Option(None, help="with --ray: files per actor call (default 64)")
          ) -> None:
    """Score audio files or folders (any length: long files window by window); exit 2 if any file failed.

    score: raw, higher = more bona fide (the model's convention: docs/decisions.md).
    llr: natural-log likelihood ratio bona fide vs spoof (needs a calibration); p_bonafide at --prior.
    """
    from plastispoof.detectors import start_scoring
    from plastispoof.results import format_row

    if ray is not None or out is not None:
        from plastispoof.scale.ray_scoring import DetectorSpec, format_ray_scoring, score_with_ray

        if ray is None or out is None or segments or plot is not None or as_json:
            raise InputError("Ray scoring takes --ray and --out together, without --segments, --plot or --json "
                             "(its rows are the --json fields)")
        spec = DetectorSpec(*(str(p) if p else None for p in (run, model, weights, onnx, calibration)),
                            precision=precision, operating_point=operating_point, prior=prior)
        result = score_with_ray(paths, out, spec, address=ray, actors=actors, gpus_per_actor=gpus_per_actor,
                                batch_size=batch_size)
        typer.echo(format_ray_scoring(result))
        if result.failed:
            raise typer.Exit(2)
        return
    job = start_scoring(paths, run=run, model=model, weights=weights, onnx=onnx, calibration=calibration, prior=prior,
                        operating_point=operating_point, segments=segments, plot=plot, precision=precision,
                        max_seconds=max_seconds, note=lambda text: typer.echo(text, err=True), shipped=shipped)
    if not as_json:
        typer.echo("\n".join(job.header))
    elif job.model_line:  # which model answers, on stderr so stdout stays JSON Lines
        typer.echo(job.model_line, err=True)
    for result in job.results:
        if as_json:
            sys.stdout.write(json.dumps(result.as_dict()) + "\n")
            sys.stdout.flush()
        else:
            typer.echo(format_row(result, job.calibrated))
        if result.error:  # also on stderr: redirecting stdout must not hide why a file failed
            typer.echo(f"error: {result.path}: {result.error}", err=True)
    if job.failed:
        typer.echo(job.summary, err=True)
        raise typer.Exit(2)


@app.command()
def serve(run: Optional[Path] = typer.Option(None, help="run directory"),
          onnx: Optional[Path] = typer.Option(None, help="an ONNX export (plastispoof export)"),
          model: Optional[str] = typer.Option(None, help="model name for foreign weights, e.g. aasist"),
          weights: Optional[Path] = typer.Option(None, help="foreign .pth state_dict"),
          calibration: Optional[Path] = typer.Option(None, help="calibration.json; a run's own one by default"),
          operating_point: Optional[str] = typer.Option(None, help="default decision rule: eer | fpr=0.01 | bayes"),
          prior: float = typer.Option(0.5, help="default prior of bona fide for p_bonafide and bayes"),
          host: str = typer.Option("127.0.0.1", help="address to bind (loopback only by default)"),
          port: int = typer.Option(8000, help="TCP port"),
          threads: int = typer.Option(2, help="inference workers"),
          max_upload_mb: float = typer.Option(20.0, help="largest request body (413 above)"),
          max_duration_s: float = typer.Option(600.0, help="longest audio (413 above)"),
          max_queue: int = typer.Option(32, help="jobs waiting for a worker at most (503 + Retry-After above)"),
          timeout_s: float = typer.Option(60.0, help="time limit of a request (504 after it)"),
          api_key_file: Optional[Path] = typer.Option(None, help="file holding the key every request must send "
                                                                 "as Authorization: Bearer <key>"),
          cors_origin: Optional[str] = typer.Option(None, help="allow this origin cross-site (CORS is off without)")
          ) -> None:
    """Serve a model over HTTP (FastAPI + uvicorn): the API of docs/serve.md and a web page at /."""
    from plastispoof.serve import run_server

    run_server(run=run, onnx=onnx, model=model, weights=weights, calibration=calibration,
               operating_point=operating_point, prior=prior, host=host, port=port, api_key_file=api_key_file,
               cors_origin=cors_origin, max_upload_mb=max_upload_mb, max_duration_s=max_duration_s,
               threads=threads, max_queue=max_queue, timeout_s=timeout_s)


@app.command()
def calibrate(run: Optional[Path] = typer.Argument(None, help="run directory (or --model with --weights)"),
              dataset: str = typer.Option(..., help="protocol reader name"),
              root: Path = typer.Option(..., help="corpus root"), subset: str = typer.Option("dev"),
              model: Optional[str] = typer.Option(None, help="model name for foreign weights, e.g. aasist"),
              weights: Optional[Path] = typer.Option(None, help="foreign .pth state_dict"),
              out: Optional[Path] = typer.Option(None, help="calibration file (default RUN/calibration.json)"),
              prior: float = typer.Option(0.5, help="prior of bona fide the logistic fit weighs the classes by")
              ) -> None:
    """Fit score -> LLR (affine, prior-weighted logistic regression) on dev scores pooled like `score`."""
    from plastispoof.calibrate import calibrate as run_calibration
    from plastispoof.calibrate import format_calibration

    result = run_calibration(run, dataset, root, subset, model=model, weights=weights, out=out, prior=prior)
    _echo_once(format_calibration(*result))  # under torchrun every rank scores a shard; rank 0 reports


@app.command()
def metrics(scores: Path = typer.Option(...), protocol: Path = typer.Option(...),
            format: str = typer.Option("auto", help="protocol format (auto, asvspoof2019, asvspoof2021, ...)"),
            asv_scores: Optional[Path] = typer.Option(None, help="organisers' ASV score file for t-DCF"),
            tdcf_form: str = typer.Option("2019", help="2019 | 2021"),
            ties: str = typer.Option("grouped", help="grouped (equal scores are one threshold; order-free) | "
                                                     "official (the ASVspoof scorers' sweep, to compare with "
                                                     "published numbers)"),
            llr: bool = typer.Option(False, "--llr", help="the scores are natural-log LLRs (calibrated): "
                                                          "report act DCF, Cllr and min Cllr"),
            reliability: Optional[Path] = typer.Option(None, help="with --llr: reliability diagram PNG"),
            bootstrap: int = typer.Option(1000, help="resamples for the 95 % EER intervals (0: none)"),
            as_json: bool = typer.Option(False, "--json")) -> None:
    """EER (with 95 % bootstrap intervals), min t-DCF, per-attack EER (and ASVspoof 5 DCFs) of a score file
    against a protocol."""
    from plastispoof.metrics import format_report
    from plastispoof.score_files import score_protocol

    if reliability is not None and not llr:
        raise InputError("--reliability draws predicted probabilities from LLRs: add --llr (calibrated scores)")
    report = score_protocol(scores, protocol, format=format, asv_scores=asv_scores, tdcf_form=tdcf_form,
                            ties=ties, llr=llr, bootstrap=bootstrap)
    if reliability is not None:
        from plastispoof.llr_metrics import plot_reliability_of_files

        plot_reliability_of_files(scores, protocol, format, reliability)
    typer.echo(json.dumps(report, indent=1) if as_json else format_report(report))


@app.command()
def fuse(scores: List[Path] = typer.Argument(..., help="score files of the systems (utt_id score lines)"),
         dev_key: Path = typer.Option(..., help="protocol of the dev trials the fusion is fitted on"),
         out: Path = typer.Option(..., help="fused LLR score file (and OUT.fusion.json)"),
         prior: float = typer.Option(0.5, help="prior of bona fide the fit weighs the classes by"),
         format: str = typer.Option("auto", help="format of the dev key")) -> None:
    """Logistic-regression fusion of several systems into one calibrated LLR score file (fitted on dev)."""
    from plastispoof.fusion import format_fusion, fuse_score_files

    typer.echo(format_fusion(fuse_score_files(scores, dev_key, out, prior=prior, format=format)))


@app.command()
def info(path: Path = typer.Argument(..., help="run directory, model.onnx export, card.json, or the name of a "
                                                "shipped detector (plastispoof models)"),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """Print a model card: model, parameters, training data, strategy, dev EER, calibration, input, score
    direction, toolkit version and commit (a shipped detector's: also its held-out results and limits)."""
    from plastispoof.card import format_card, read_card
    from plastispoof.shipped import format_shipped_card, is_shipped_name, read_shipped_card

    if is_shipped_name(path):
        card = read_shipped_card(str(path))
        typer.echo(json.dumps(card, indent=1) if as_json else format_shipped_card(card))
        return
    card = read_card(path)
    typer.echo(json.dumps(card, indent=1) if as_json else format_card(card))


@app.command()
def models() -> None:
    """The detectors shipped in the package, one line each (``plastispoof info NAME`` prints a card)."""
    from plastispoof.shipped import list_shipped

    typer.echo(list_shipped())


@app.command()
def export(run: Optional[Path] = typer.Argument(None, help="run directory (or --model with --weights)"),
           out: Path = typer.Option(..., help="the ONNX file to write (card and calibration go beside it)"),
           model: Optional[str] = typer.Option(None, help="model name for foreign weights, e.g. aasist"),
           weights: Optional[Path] = typer.Option(None, help="foreign .pth state_dict"),
           quantize: bool = typer.Option(False, "--quantize", help="int8 dynamic quantisation (onnxruntime)")) -> None:
    """One ONNX graph with the features inside: raw waveforms (batch, num_samples) -> score (higher = bona fide)."""
    from plastispoof.onnx_export import export_onnx, format_export

    typer.echo(format_export(out, export_onnx(run, out, model=model, weights=weights, quantize=quantize)))


@app.command()
def demo(out: Path = typer.Option(Path("runs/demo"), help="where runs and the table go"),
         epochs: Optional[int] = typer.Option(None, help="epochs per stage (default: the demo's)"),
         profile: str = typer.Option("demo", help="corpus profile: demo (the documented table) or tiny (a quick "
                                                  "check that everything runs)"),
         set_: List[str] = typer.Option([], "--set", help="override for every run, e.g. "
                                                           "train.max_steps_per_epoch=2")) -> None:
    """Embedded corpus -> Table I for ResNet18 and GRNN on CPU in minutes; prints the table."""
    from plastispoof.analysis.table1 import run_demo

    _echo_once(run_demo(out, epochs=epochs, profile=profile, overrides=set_))


@reproduce_app.command("table1")
def reproduce_table1(dataset: str = typer.Option(...), root: Path = typer.Option(...),
                     models: Optional[str] = typer.Option(None, help="comma list"),
                     strategies: Optional[str] = typer.Option(None, help="comma list"),
                     seeds: str = typer.Option("42"), out: Path = typer.Option(Path("runs/table1")),
                     epochs: Optional[int] = typer.Option(None),
                     set_: List[str] = typer.Option([], "--set")) -> None:
    """Run every model x strategy x seed (finished ones are skipped) and write Table I."""
    from plastispoof.analysis.table1 import table1

    _echo_once(table1(dataset=dataset, root=root, models=_csv(models), strategies=_csv(strategies),
                      seeds=list(_seeds(seeds)), out=out, epochs=epochs, overrides=set_))


@reproduce_app.command("layers")
def reproduce_layers(dataset: str = typer.Option(...), root: Path = typer.Option(...),
                     model: str = typer.Option("wav2vec2-small"), strategy: str = typer.Option("dropin-frozen"),
                     seeds: str = typer.Option("42"), out: Path = typer.Option(Path("runs/layers")),
                     epochs: Optional[int] = typer.Option(None), set_: List[str] = typer.Option([], "--set")) -> None:
    """Fig. 5: drop in at each layer in turn; EER per layer as a table and a PNG."""
    from plastispoof.analysis.layer_sweep import layer_ablation

    _echo_once(layer_ablation(dataset=dataset, root=root, model=model, strategy=strategy,
                              seeds=list(_seeds(seeds)), out=out, epochs=epochs, overrides=set_))


@reproduce_app.command("tradeoff")
def reproduce_tradeoff(dataset: str = typer.Option(...), root: Path = typer.Option(...),
                       model: str = typer.Option("resnet34"),
                       kappas: str = typer.Option("0.5,0.25,0.125", help="FLOPs targets, each at or above the "
                                                  "model's floor (resnet34 0.113, grnn 0.163 at recipe settings)"),
                       out: Path = typer.Option(Path("runs/tradeoff")), epochs: Optional[int] = typer.Option(None),
                       set_: List[str] = typer.Option([], "--set"),
                       seeds: str = typer.Option("42", help="comma list; several give mean ± std rows"),
                       controls: bool = typer.Option(True, help="per kappa, a plain model narrowed to the same "
                                                     "FLOPs (uniform width), trained as long")) -> None:
    """Train dynamic-width models at each FLOP target kappa; write EER vs FLOPs/params and a Pareto PNG."""
    from plastispoof.analysis.tradeoff import reproduce_tradeoff as run_tradeoff

    typer.echo(run_tradeoff(dataset=dataset, root=root, model=model,
                            kappas=[float(k) for k in _csv(kappas) or []], out=out, epochs=epochs, overrides=set_,
                            seeds=list(_seeds(seeds)), controls=controls))


@reproduce_app.command("nes2net")
def reproduce_nes2net(root: Path = typer.Option(..., help="embedded corpus (plastispoof synth --profile demo)"),
                      seeds: str = typer.Option("42,43,44"), epochs: Optional[int] = typer.Option(None),
                      encoder_run: Optional[Path] = typer.Option(None, help="take the frozen features from this "
                                                                 "finished run or Hugging Face folder instead of "
                                                                 "training the recipe's wav2vec2-small"),
                      backends: Optional[str] = typer.Option(None, help="comma list (default: every back-end of "
                                                             "configs/nes2net.yaml)"),
                      out: Path = typer.Option(Path("runs/nes2net")),
                      set_: List[str] = typer.Option([], "--set", help="override for every back-end run")) -> None:
    """Nes2Net, Nes2Net-X, reduction + AASIST and a linear head on the same frozen SSL features: EER, parameters,
    MACs per 4 s and training time per epoch in one table."""
    from plastispoof.analysis.nes2net import reproduce_nes2net as run_comparison

    typer.echo(run_comparison(root, out, _seeds(seeds), epochs, encoder_run, _csv(backends), set_))


@reproduce_app.command("adaptation")
def reproduce_adaptation(root: Path = typer.Option(..., help="embedded corpus with its adaptation split (plastispoof "
                                                   "synth --profile demo --adaptation 0.25)"),
                         seeds: str = typer.Option("42,43,44"), epochs: Optional[int] = typer.Option(None),
                         systems: Optional[str] = typer.Option(None, help="comma list (default: every system of "
                                                               "configs/adaptation.yaml)"),
                         out: Path = typer.Option(Path("runs/adaptation")),
                         set_: List[str] = typer.Option([], "--set", help="override for every adapted run")) -> None:
    """LoRA, MoLEx, MoLEx + an added expert and full fine-tuning adapting one detector to new attacks: EER on the
    new attacks (learning) and on the old ones (forgetting), with trainable parameters."""
    from plastispoof.analysis.adaptation import reproduce_adaptation as run_comparison

    typer.echo(run_comparison(root, out, _seeds(seeds), epochs, _csv(systems), set_))


@reproduce_app.command("unseen")
def reproduce_unseen(root: Optional[Path] = typer.Option(None, help="corpus written by `plastispoof synth "
                                                                     "--bonafide/--recipe`"),
                     systems: Optional[str] = typer.Option(None, help="comma list of configs/unseen.yaml systems"),
                     families: Optional[str] = typer.Option(None, help="held-out families to run (default: all)"),
                     seeds: str = typer.Option("42"),
                     weights: Optional[Path] = typer.Option(None, help="published checkpoint for the pretrained "
                                                                        "systems (e.g. AASIST.pth)"),
                     out: Path = typer.Option(Path("runs/unseen")), epochs: Optional[int] = typer.Option(None),
                     set_: List[str] = typer.Option([], "--set"),
                     merge: Optional[str] = typer.Option(None, help="comma list of benchmark folders: write one "
                                                                     "table of their results to --out, run nothing")
                     ) -> None:
    """Train on all attack families but one, score the held-out one, for each family: table and PNG."""
    from plastispoof.analysis.unseen import merge_reports
    from plastispoof.analysis.unseen import reproduce_unseen as run_unseen

    if merge:
        typer.echo(merge_reports([Path(p) for p in _csv(merge) or []], out))
        return
    if root is None:
        raise InputError("say which corpus: --root DIR (written by `plastispoof synth --recipe open-speech`)")
    typer.echo(run_unseen(root=root, systems=_csv(systems), seeds=list(_seeds(seeds)),
                          families=_csv(families), weights=weights, out=out, epochs=epochs, overrides=set_))


@reproduce_app.command("default-detector")
def reproduce_default_detector(weights: Path = typer.Option(..., help="the official AASIST.pth (MIT; its SHA-256 "
                                                                       "is checked)"),
                               out: Path = typer.Option(Path("runs/default-detector")),
                               config: Optional[Path] = typer.Option(None, help="recipe (default: "
                                                                                "configs/default-detector.yaml)"),
                               set_: List[str] = typer.Option([], "--set", help="override of the recipe's train "
                                                                                "config, e.g. train.epochs=1")) -> None:
    """Build the shipped default detector from configs/default-detector.yaml: corpora, training, calibration,
    held-out English report beside the zero-shot AASIST, shipped folder."""
    from plastispoof.analysis.default_detector import RECIPE
    from plastispoof.analysis.default_detector import reproduce_default_detector as run_default

    typer.echo(run_default(weights, out, recipe_path=config or RECIPE, overrides=set_))


@reproduce_app.command("adapt-voices")
def reproduce_adapt_voices(out: Path = typer.Option(Path("runs/adapt-voices")),
                           voices: Optional[str] = typer.Option(None, help="comma list (default: every voice of "
                                                                           "the default detector's corpus)"),
                           files: int = typer.Option(40, help="recordings per voice the default never heard"),
                           epochs: int = typer.Option(2), seed: int = typer.Option(42),
                           set_: List[str] = typer.Option([], "--set")) -> None:
    """Each Asterisk voice as the user's channel: adapt the shipped default on 70 % of its recordings, test on
    the other 30 % and on the other voices (docs/default-detector.md)."""
    from plastispoof.analysis.adapt_voices import adapt_each_voice
    from plastispoof.analysis.default_detector import load_default_recipe

    typer.echo(adapt_each_voice(load_default_recipe(), out, voices=_csv(voices), files_per_voice=files,
                                epochs=epochs, seed=seed, overrides=set_))


@app.command()
def adapt(bonafide: Path = typer.Option(..., help="your genuine recordings (speaker = first sub-folder)"),
          out: Path = typer.Option(..., help="output folder: OUT/run (the adapted run), OUT/corpus, adapt.md"),
          from_: str = typer.Option("default", "--from", help="shipped detector name or an AASIST run directory"),
          held_out: float = typer.Option(0.3, help="share of the recordings kept to measure before and after"),
          families: Optional[str] = typer.Option(None, help="spoof families to make (default: world, griffinlim, "
                                                            "lpc, sinusoidal; also codec, espeak-ng, festival, "
                                                            "flite)"),
          recipe: str = typer.Option("dropin-frozen", help="dropin-frozen | dropin-unfrozen | finetune"),
          epochs: int = typer.Option(2), seed: int = typer.Option(42),
          language: str = typer.Option("en", help="language of the recordings (for the TTS families)"),
          set_: List[str] = typer.Option([], "--set", help="training override, e.g. data.batch_size=4")) -> None:
    """Fit a detector to your channel: spoofs of your recordings, grow and train, calibrate, before/after table."""
    from plastispoof.adapt import adapt as run_adapt

    report = run_adapt(bonafide, out, start=from_, held_out=held_out, families=_csv(families), recipe=recipe,
                       epochs=epochs, seed=seed, language=language, overrides=set_)
    typer.echo(report["table"])
    typer.echo(f"adapted run: {Path(out) / 'run'} (score with: plastispoof score --run {Path(out) / 'run'} FILE)")


@app.command()
def cost(model: str, input_frames: int = typer.Option(200, help="frames of SSL features (200 = about 4 s)"),
         input_dim: int = typer.Option(1024, help="SSL feature width")) -> None:
    """Parameters and MACs/FLOPs of a back-end alone (torch.utils.flop_counter)."""
    from plastispoof.cost import backend_cost, format_cost

    typer.echo(format_cost([backend_cost(m, input_dim=input_dim, frames=input_frames) for m in _csv(model) or []]))


@app.command()
def experts(run: Path, dataset: str = typer.Option(...), root: Path = typer.Option(...),
            subset: str = typer.Option("eval")) -> None:
    """MoLEx expert usage per attack and per layer: a table and a heatmap PNG in the run directory."""
    from plastispoof.analysis.expert_usage import expert_usage_report

    typer.echo(expert_usage_report(run, dataset=dataset, root=root, subset=subset))


@app.command()
def gradcam(run: Path, audio: Path, out: Optional[Path] = typer.Option(None, help="PNG path")) -> None:
    """Grad-CAM of each ResNet stage for one audio file, as a PNG."""
    from plastispoof.analysis.gradcam import gradcam_figure

    typer.echo(f"wrote {gradcam_figure(run, audio, out)}")


@app.command()
def stress(run: Optional[Path] = typer.Argument(None, help="run directory (or --model with --weights)"),
           model: Optional[str] = typer.Option(None, help="model name for foreign weights, e.g. aasist"),
           weights: Optional[Path] = typer.Option(None, help="foreign .pth state_dict"),
           dataset: str = typer.Option(...), root: Path = typer.Option(...), subset: str = typer.Option("eval"),
           conditions: Optional[str] = typer.Option(None, help="comma list (default: all; see docs/robustness.md)"),
           out: Optional[Path] = typer.Option(None, help="default: RUN/stress or runs/stress-MODEL"),
           max_trials: Optional[int] = typer.Option(None, help="a seeded subset of this many trials"),
           workers: int = typer.Option(0, help="DataLoader workers that make the degraded audio"),
           onnx: Optional[Path] = typer.Option(None, help="an ONNX export (plastispoof export) instead")) -> None:
    """EER, ΔEER and min t-DCF under codecs, noise, reverberation, packet loss and level/band changes."""
    from plastispoof.analysis.stress import format_stress, stress_command

    typer.echo(format_stress(stress_command(run, model, weights, dataset, root, conditions=_csv(conditions),
                                            out=out, subset=subset, max_trials=max_trials, num_workers=workers,
                                            onnx=onnx)))


def main() -> None:
    from plastispoof.runtime import keep_freed_memory

    keep_freed_memory()
    _DEBUG["on"] = "--debug" in sys.argv[1:]
    try:
        app(args=normalised_argv(sys.argv[1:]), prog_name="plastispoof")
    except InputError as err:
        if _DEBUG["on"]:
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
