"""The shapes of the API's answers, every field described (they make the OpenAPI page at ``/docs``). The values
come from :meth:`plastispoof.results.ScoreResult.as_dict`, the object ``score --json`` prints."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Segment(BaseModel):
    start_s: float = Field(description="start of the window, seconds from the start of the audio")
    end_s: float = Field(description="end of the window, seconds (a short file's one padded window ends at its end)")
    score: float | None = Field(description="the window's raw score, higher = more bona fide")
    llr: float | None = Field(description="the window's calibrated log-likelihood ratio (null without calibration)")


class ScoreResponse(BaseModel):
    path: str = Field(description="the uploaded file's name (only a label), 'body' for a raw upload")
    score: float | None = Field(description="raw score of the whole audio: mean over its windows, higher = more "
                                            "bona fide (bona fide logit minus spoof logit)")
    decision: str | None = Field(description="'bonafide' or 'spoof' at the operating point; null when the model "
                                             "has no threshold")
    error: str | None = Field(description="why this file could not be scored (batch only; then score is null)")
    llr: float | None = Field(description="natural-log likelihood ratio bona fide vs spoof (needs a calibration)")
    p_bonafide: float | None = Field(description="probability of bona fide at the stated prior (needs a "
                                                 "calibration)")
    prior: float | None = Field(description="prior probability of bona fide p_bonafide is computed at")
    operating_point: str | None = Field(description="eer | fpr=X | bayes: where the decision threshold comes from")
    threshold: float | None = Field(description="the decision threshold (on score, or on llr for bayes)")
    duration_s: float | None = Field(description="duration of the decoded audio in seconds")
    model: str | None = Field(description="the model's name")
    model_hash: str | None = Field(description="SHA-256 of the model's weights")
    segments: list[Segment] | None = Field(description="with segments=true: score and llr of every window")
    note: str | None = Field(description="a remark, e.g. that the audio was shorter than one window")
    precision: str | None = Field(description="what the model computed in: float32 | bfloat16 (null for ONNX)")
    elapsed_ms: float = Field(description="milliseconds from the request's arrival to its answer")


class BatchResponse(BaseModel):
    results: list[ScoreResponse] = Field(description="one object per file, in the order sent; a file that could "
                                                     "not be scored has its error and null scores")
    elapsed_ms: float = Field(description="milliseconds from the request's arrival to its answer")


class ErrorResponse(BaseModel):
    error: str = Field(description="what was wrong, in one sentence")
    status: int = Field(description="the HTTP status code, repeated")


class ModelResponse(BaseModel):
    model: str = Field(description="the model's name")
    model_hash: str = Field(description="SHA-256 of the weights")
    card: dict | None = Field(description="the model card (plastispoof info): training data, dev EER, thresholds")
    calibration: dict | None = Field(description="the calibration in use (score -> llr), or null")
    operating_point: dict = Field(description="the default decision rule: name, domain, threshold, prior, rule")
    input: dict = Field(description="sample rate, window and hop the audio is cut into, how windows are pooled")
    precision: str | None = Field(description="what the model computes in (null for ONNX)")
    limits: dict = Field(description="the service's limits: upload size, duration, threads, queue, timeout")
