"""What `ezlink serve` says when it starts: where, which models, whether keys are needed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ezlink.engine.registry import ModelRegistry


@dataclass(frozen=True)
class Banner:
    url: str
    models: list[dict[str, Any]]
    auth: str

    def text(self) -> str:
        lines = [f"ezlink serving on {self.url}", f"  auth:    {self.auth}"]
        for model in self.models:
            serves = ", ".join(model["serves"])
            if model["dimensions"]:
                serves += f", {model['dimensions']} dims"
            names = ", ".join(model["names"])
            lines.append(f"  model:   {model['id']} ({serves}) as {names}")
        lines.append(f"  probes:  {self.url}/health  {self.url}/ready  metrics: {self.url}/metrics")
        return "\n".join(lines)

    def fields(self) -> dict[str, Any]:
        return {"url": self.url, "models": self.models, "auth": self.auth}


def build_banner(registry: ModelRegistry, host: str, port: int, master_key_set: bool) -> Banner:
    display_host = f"[{host}]" if ":" in host else host
    return Banner(
        url=f"http://{display_host}:{port}",
        models=[
            {
                "id": model.card.id,
                "names": list(model.card.public_names),
                "dimensions": model.card.dimension,
                "serves": sorted(model.card.capabilities),
            }
            for model in registry.models
        ],
        # The state only: the key itself is never printed.
        auth="master key required (EZLINK_MASTER_KEY is set)"
        if master_key_set
        else "OFF: no master key, anyone who can reach the port may call",
    )
