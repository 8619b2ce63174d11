"""Video: text to video (/v1/video/generations)."""

from __future__ import annotations

from typing import Any

from modelyard.types import MediaRegistration, ModelType


class VideoRegistration(MediaRegistration):
    default_generate_config: dict[str, Any] = {}


VIDEO = ModelType(
    name="video",
    schema=VideoRegistration,
    abilities=("text_to_video",),
    routes=("/v1/video/generations",),
)
