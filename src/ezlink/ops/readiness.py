"""Readiness: are the models loaded, and can the server reach what it depends on?

Other parts register checks by name in ``AppState.readiness_checks`` (the
accounts store adds ``database``); a check is an async callable that raises
when its dependency is unusable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

logger = logging.getLogger("ezlink.readiness")

ReadinessCheck = Callable[[], Awaitable[object]]

# A probe that hangs is a failed probe; Kubernetes' own default timeout is 1 s.
CHECK_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Readiness:
    models_loaded: bool
    # name → "ok", or why not (the exception's class: messages may hold hosts or URLs).
    checks: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.models_loaded and all(v == "ok" for v in self.checks.values())

    def problems(self) -> list[str]:
        found = [] if self.models_loaded else ["models are loading"]
        found += [f"{name}: {why}" for name, why in self.checks.items() if why != "ok"]
        return found


async def _run(name: str, check: ReadinessCheck) -> tuple[str, str]:
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
    except TimeoutError:
        return name, f"no answer in {CHECK_TIMEOUT_S:g} s"
    except Exception as exc:
        logger.warning("readiness check %s failed: %s", name, type(exc).__name__)
        return name, f"unreachable ({type(exc).__name__})"
    return name, "ok"


async def assess(models_loaded: bool, checks: Mapping[str, ReadinessCheck]) -> Readiness:
    results = await asyncio.gather(*(_run(name, check) for name, check in checks.items()))
    return Readiness(models_loaded=models_loaded, checks=dict(results))
