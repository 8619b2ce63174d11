"""Image: text to image and image to image (/v1/images/generations, /v1/images/variations)."""

from __future__ import annotations

from typing import Any

from modelyard.types import MediaRegistration, ModelType


class ImageRegistration(MediaRegistration):
    controlnet: list[Any] = []
    default_generate_config: dict[str, Any] = {}


IMAGE = ModelType(
    name="image",
    schema=ImageRegistration,
    abilities=("text_to_image", "image_to_image"),
    routes=("/v1/images/generations", "/v1/images/variations"),
)
