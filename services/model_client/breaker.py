"""Failure handling of the model client: errors, the circuit breaker and the retry back-off."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal


class ModelError(Exception):
    """A model server call failed; `status` is the gRPC status name (e.g. "UNAVAILABLE")."""

    def __init__(self, model: str, status: str, message: str) -> None:
        super().__init__(f"model {model!r}: {status}: {message}")
        self.model = model
        self.status = status
        self.message = message


class ModelRejected(ModelError):
    """The server refused this request (bad input, invalid schema, too long a prompt): do not retry it."""


class ModelUnavailable(ModelError):
    """The model cannot be reached now (server down, queue full, circuit open): try again later."""


class ModelTimeout(ModelUnavailable):
    """No answer within the deadline."""


State = Literal["closed", "open", "half_open"]


@dataclass
class CircuitBreaker:
    """Opens after `failures` consecutive failures; after `reset_after_s` lets one trial call through
    (half-open): its success closes the circuit, its failure opens it for another cool-down."""

    failures: int = 5
    reset_after_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    consecutive: int = field(default=0, init=False)
    opened_at: float | None = field(default=None, init=False)
    trial_in_flight: bool = field(default=False, init=False)

    @property
    def state(self) -> State:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.clock() - self.opened_at >= self.reset_after_s else "open"

    def allow(self) -> bool:
        """Whether a call may go out now; in half-open state only the first caller gets the trial."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self.trial_in_flight:
            self.trial_in_flight = True
            return True
        return False

    def retry_in_s(self) -> float:
        return 0.0 if self.opened_at is None else max(0.0, self.opened_at + self.reset_after_s - self.clock())

    def success(self) -> None:
        self.consecutive = 0
        self.opened_at = None
        self.trial_in_flight = False

    def abandon(self) -> None:
        """The call was cancelled before an answer: let another caller make the trial."""
        self.trial_in_flight = False

    def failure(self) -> None:
        self.consecutive += 1
        if self.trial_in_flight or self.consecutive >= self.failures:
            self.opened_at = self.clock()
        self.trial_in_flight = False


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off with full jitter: attempt n waits up to min(cap, base * 2**n)."""

    base_s: float = 0.1
    cap_s: float = 2.0
    jitter: Callable[[], float] = random.random

    def delay(self, attempt: int) -> float:
        return min(self.cap_s, self.base_s * 2**attempt) * self.jitter()
