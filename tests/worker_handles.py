"""What the coordinator's test workers share: a ``WorkerHandle`` that drives none of its runs
by the claims a restore would ask it for (``held``), so has nothing to abandon or resend."""

from __future__ import annotations

from kiok.protocol.messages import Claim


class NoClaims:
    def held(self) -> tuple[Claim, ...]:
        return ()

    def abandon(self, claims: tuple[Claim, ...]) -> None:
        pass

    def resync(self) -> None:
        pass
