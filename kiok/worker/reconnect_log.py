"""What a worker says about failed connections to the masters, so that masters that stay
down for hours do not fill its log: the first failure of a streak at WARNING, the ones after
it at DEBUG with one WARNING summary per ``SUMMARY_EVERY_S`` while the streak lasts, and one
INFO line when a master welcomes the worker again. Pure: the caller passes both clocks and
logs the lines it gets back; the retry pace is the reconnect loop's, not this module's."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

#: At most one "still cannot reach the masters" line per this many seconds of failures.
SUMMARY_EVERY_S = 60.0


@dataclass(frozen=True)
class Line:
    level: int
    text: str


class ConnectFailures:
    """One streak of failed connection attempts, from the first failure to the next welcome.
    ``now`` is a monotonic clock (when to summarize), ``wall`` the epoch time shown as the
    streak's start (``HH:MM:SS``, local time as the text log's timestamps)."""

    def __init__(self, summary_every_s: float = SUMMARY_EVERY_S) -> None:
        self._every = summary_every_s
        self.attempts = 0
        self._since = ""
        self._said_at = 0.0

    def failed(self, error: str, now: float, wall: float) -> Line:
        """The line for one more failed attempt; ``error`` names the master and what failed."""
        self.attempts += 1
        if self.attempts == 1:
            self._since = time.strftime("%H:%M:%S", time.localtime(wall))
            self._said_at = now
            return Line(logging.WARNING, error)
        if now - self._said_at >= self._every:
            self._said_at = now
            return Line(
                logging.WARNING,
                f"still cannot reach the masters: {self.attempts} attempts since {self._since}; "
                f"last error: {error}",
            )
        return Line(logging.DEBUG, error)

    def connected(self, where: str) -> Line | None:
        """The line for a welcome (None when nothing failed before it); ends the streak."""
        if self.attempts == 0:
            return None
        line = Line(
            logging.INFO,
            f"reached the masters again ({where}) after {self.attempts} failed "
            f"attempt{'s' if self.attempts != 1 else ''} since {self._since}",
        )
        self.attempts = 0
        return line
