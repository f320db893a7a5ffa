"""What prediction sites and the monitor actor say to each other.

Senders (gateway, pool and dedicated replicas) never ship raw rows for drift: they send
:class:`SketchPart` count vectors per (model, version, minute). Each :class:`Flush` carries
the sender's id and a sequence number; the monitor applies a (sender, seq) at most once
and acknowledges only once it is stored, so a sender resends what was not acknowledged
and nothing is lost or counted twice. The gateway also sends :class:`PredictionRecord`
rows of its predictions (features and answers by request id) for delayed labels to join.

The monitor is one detached named actor (``MONITOR_NAME`` in ``NAMESPACE``). Its methods:

- ``ingest(flush: Flush) -> Ack``
- ``feedback(model: str, labels: list[Label]) -> FeedbackResult``
- ``fleet() -> list[dict]`` (``GET /v1/monitoring``), ``model(name) -> dict``
  (``GET /v1/monitoring/{name}``; raises ``NotFoundError`` for an unknown model),
  ``history(name, limit) -> dict`` (statistics per evaluation, status changes, alerts and
  retrains: the dashboard's model page)
- ``evaluate() -> list[dict]`` (evaluate every model now), ``health() -> dict``
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlfleet.monitoring.sketch import Counts

MONITOR_NAME = "mlfleet-monitor"
NAMESPACE = "mlfleet"


@dataclass
class SketchPart:
    """Counts of one model version's predictions during one minute, from one sender."""

    model: str
    version: str
    minute: int  # minutes since the Unix epoch (UTC) when the rows were predicted
    counts: Counts


@dataclass
class PredictionRecord:
    """One answered request, kept (bounded) until its labels arrive."""

    request_id: str
    model: str
    version: str
    at: float  # seconds since the Unix epoch
    rows: list[dict[str, Any]]  # the request's contract features, as the model read them
    predictions: list[Any]
    confidences: list[float] | None = None  # calibrated top-class confidence per row


@dataclass
class Flush:
    """One message from a sender: everything it counted since its last flush."""

    sender: str
    seq: int
    parts: list[SketchPart] = field(default_factory=list)
    predictions: list[PredictionRecord] = field(default_factory=list)
    # Rows the sender could not keep while the monitor was unreachable (its bound was
    # reached), cumulative since the sender started: reported, never silent.
    dropped_rows: int = 0


@dataclass
class Ack:
    """The monitor stored (or had already stored) a flush."""

    seq: int
    duplicate: bool = False
    # Whether the fleet records predictions now (``PUT /v1/monitoring/recording``): a sender
    # learns a pause or a resume from its next acknowledgement.
    recording: bool = True


@dataclass
class Label:
    """Ground truth for one predicted row: ``row`` indexes the request's rows."""

    request_id: str
    label: Any
    row: int = 0


@dataclass
class FeedbackResult:
    """What became of a batch of labels."""

    matched: int
    unknown: list[str] = field(default_factory=list)  # request ids not (or no longer) known
    written: str | None = None  # the Parquet file the labelled rows went to
