"""Earned reliability score of a node, in [0, 1]. Pure: every update takes ``now``.

A node starts at ``r0 = 0.30`` (unproven). Between events the score drifts back
toward a neutral 0.5 (old evidence fades), then each event moves it:

    drift over dt seconds:       r ← 0.5 + (r − 0.5) · 2^(−dt / H_idle)        H_idle = 3 days
    steady heartbeats for dt s:  r ← r + (c_up − r) · (1 − 2^(−dt / H_up))     if r < c_up
                                                             c_up = 0.70, H_up = 12 h
    task completed:              r ← r + a_ok · (1 − r)                         a_ok   = 0.08
    task failed:                 r ← r − a_fail · r                             a_fail = 0.25
    missed heartbeat:            r ← r − a_miss · r                             a_miss = 0.02
    went offline:                r ← r − a_off · r                              a_off  = 0.10
    flapping (≥ 3 offline transitions within 1 h, counting this one):
                                 r ← r − a_flap · r  (on top of a_off)          a_flap = 0.20

Consequences worth knowing:

* Uptime alone earns at most c_up = 0.70; only completed work lifts a node above it
  (about 10 clean tasks take a fresh node from 0.30 to 0.70, 25 to 0.91).
* Failures cost about three times what successes earn, so a node that fails one task
  in four loses ground.
* A healthy node that sits idle and online settles a little under 0.70 (the uptime
  pull toward 0.70 against the drift toward 0.5); an offline one drifts to 0.5,
  so a node's bad week is forgiven within a couple of weeks, and so is its good one.

Everything is a value: ``Reliability`` is frozen and each function returns a new one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

HOUR = 3600.0
DAY = 24 * HOUR


@dataclass(frozen=True)
class ReliabilityParams:
    initial: float = 0.30
    neutral: float = 0.50
    idle_half_life_s: float = 3 * DAY
    uptime_ceiling: float = 0.70
    uptime_half_life_s: float = 12 * HOUR
    task_ok_gain: float = 0.08
    task_fail_loss: float = 0.25
    missed_heartbeat_loss: float = 0.02
    offline_loss: float = 0.10
    flap_loss: float = 0.20
    flap_window_s: float = HOUR
    flap_count: int = 3


DEFAULT_PARAMS = ReliabilityParams()


@dataclass(frozen=True)
class Reliability:
    score: float
    updated_at: float
    offline_transitions: tuple[float, ...] = ()  # recent ones only (within the flap window)

    def to_dict(self) -> dict[str, object]:
        return {"score": self.score, "updated_at": self.updated_at,
                "offline_transitions": list(self.offline_transitions)}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Reliability:
        raw = d.get("offline_transitions") or []
        seq = raw if isinstance(raw, (list, tuple)) else []
        return cls(score=_clamp(_float(d.get("score"), DEFAULT_PARAMS.initial)),
                   updated_at=_float(d.get("updated_at"), 0.0),
                   offline_transitions=tuple(_float(x, 0.0) for x in seq))


def _float(v: object, default: float) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else default


def _clamp(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def _half(dt: float, half_life: float) -> float:
    """2^(−dt/half_life), for dt ≥ 0."""
    return 0.5 ** (max(0.0, dt) / half_life) if half_life > 0 else 0.0


def new_node(now: float, p: ReliabilityParams = DEFAULT_PARAMS) -> Reliability:
    return Reliability(score=p.initial, updated_at=now)


def decay(rel: Reliability, now: float, p: ReliabilityParams = DEFAULT_PARAMS) -> Reliability:
    """Drift toward neutral for the time since the last update. Time never runs backwards:
    a ``now`` earlier than ``updated_at`` changes nothing."""
    dt = now - rel.updated_at
    if dt <= 0:
        return rel
    score = p.neutral + (rel.score - p.neutral) * _half(dt, p.idle_half_life_s)
    return replace(rel, score=_clamp(score), updated_at=now)


def score_at(rel: Reliability, now: float, p: ReliabilityParams = DEFAULT_PARAMS) -> float:
    """The score as of ``now`` (drift applied), for ranking."""
    return decay(rel, now, p).score


def on_heartbeats(rel: Reliability, steady_s: float, now: float,
                  p: ReliabilityParams = DEFAULT_PARAMS) -> Reliability:
    """Credit ``steady_s`` seconds of uninterrupted heartbeats ending at ``now``."""
    rel = decay(rel, now, p)
    if rel.score >= p.uptime_ceiling or steady_s <= 0:
        return rel
    gain = (p.uptime_ceiling - rel.score) * (1.0 - _half(steady_s, p.uptime_half_life_s))
    return replace(rel, score=_clamp(rel.score + gain))


def on_task(rel: Reliability, ok: bool, now: float,
            p: ReliabilityParams = DEFAULT_PARAMS) -> Reliability:
    rel = decay(rel, now, p)
    s = rel.score
    s = s + p.task_ok_gain * (1.0 - s) if ok else s - p.task_fail_loss * s
    return replace(rel, score=_clamp(s))


def on_missed_heartbeat(rel: Reliability, now: float, missed: int = 1,
                        p: ReliabilityParams = DEFAULT_PARAMS) -> Reliability:
    rel = decay(rel, now, p)
    factor = (1.0 - p.missed_heartbeat_loss) ** max(0, missed)
    return replace(rel, score=_clamp(rel.score * factor))


def on_offline(rel: Reliability, now: float,
               p: ReliabilityParams = DEFAULT_PARAMS) -> Reliability:
    """The controller declared the node offline (three missed heartbeats)."""
    rel = decay(rel, now, p)
    recent = (*(t for t in rel.offline_transitions if now - t < p.flap_window_s), now)
    s = rel.score * (1.0 - p.offline_loss)
    if len(recent) >= p.flap_count:
        s *= 1.0 - p.flap_loss
    return replace(rel, score=_clamp(s), offline_transitions=recent[-p.flap_count:])


def is_flapping(rel: Reliability, now: float, p: ReliabilityParams = DEFAULT_PARAMS) -> bool:
    return sum(1 for t in rel.offline_transitions if now - t < p.flap_window_s) >= p.flap_count
