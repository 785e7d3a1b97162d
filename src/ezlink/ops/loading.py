"""Loading the models in the background, so the server listens (and says it is
not ready yet) while the weights load or an ONNX export runs."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable

from ezlink.engine.registry import ModelRegistry

logger = logging.getLogger("ezlink.loading")

# How often a still-loading model is reported, so a slow start is visibly alive.
PROGRESS_EVERY_S = 5.0


def stop_the_server() -> None:
    """Ask the server to shut down, as an operator's SIGTERM would."""
    signal.raise_signal(signal.SIGTERM)


class ModelLoader:
    """Starts the registry's models in a task; tells whether they are ready or failed."""

    def __init__(
        self,
        registry: ModelRegistry,
        on_loaded: Callable[[], None] | None = None,
        on_failure: Callable[[], None] = stop_the_server,
    ) -> None:
        self.registry = registry
        self.on_loaded = on_loaded
        self.on_failure = on_failure
        self.error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self.registry.ready

    @property
    def failed(self) -> bool:
        return self.error is not None

    def start(self) -> None:
        self._task = asyncio.create_task(self._load(), name="ezlink-load-models")

    async def wait(self) -> None:
        """Until loading ends, whichever way."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def stop(self) -> None:
        """Let a load in progress finish (a half-loaded backend cannot be abandoned
        safely from another thread), then stop the models."""
        await self.wait()
        await self.registry.stop()

    async def _load(self) -> None:
        started = time.monotonic()
        names = [model.card.id for model in self.registry.models]
        for name in names:
            logger.info("loading model %s…", name, extra={"fields": {"model": name}})
        progress = asyncio.create_task(self._report_progress(started, names))
        try:
            await self.registry.start()
        except Exception as exc:
            self.error = exc
            logger.exception("loading the models failed; stopping")
            self.on_failure()
            return
        finally:
            progress.cancel()
        if self.on_loaded is not None:
            self.on_loaded()
        seconds = round(time.monotonic() - started, 2)
        logger.info(
            "ready: %d model(s) loaded in %.1f s",
            len(names),
            seconds,
            extra={"fields": {"models": names, "load_seconds": seconds}},
        )

    async def _report_progress(self, started: float, names: list[str]) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            elapsed = round(time.monotonic() - started)
            logger.info(
                "still loading %s… (%d s)",
                ", ".join(names),
                elapsed,
                extra={"fields": {"models": names, "elapsed_seconds": elapsed}},
            )
