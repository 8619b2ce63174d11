"""Image: text to image and image to image (/v1/images/generations, /v1/images/variations).

An engine subclasses `ImageEngine` and implements `render(prompt, n, size, image=None) -> Images`
(encoded images, PNG unless it says otherwise); the base checks the arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelyard.errors import ModelError
from modelyard.types import MediaRegistration, ModelType
from modelyard.types.engine import EngineBase, check_bytes, check_count, check_prompt, parse_size

MAX_IMAGES = 10


class ImageRegistration(MediaRegistration):
    controlnet: list[Any] = []
    default_generate_config: dict[str, Any] = {}


@dataclass
class Images:
    images: list[bytes]
    format: str = "png"


class ImageEngine(EngineBase):
    def text_to_image(self, prompt: str, n: int = 1, size: str | None = None, **params: Any) -> Images:
        return self._render(prompt, n, size, None, params, "text_to_image")

    def image_to_image(self, image: bytes, prompt: str, n: int = 1, size: str | None = None,
                       **params: Any) -> Images:
        return self._render(prompt, n, size, check_bytes(image, "image"), params, "image_to_image")

    def _render(self, prompt: Any, n: Any, size: Any, image: bytes | None, params: dict[str, Any],
                ability: str) -> Images:
        prompt = check_prompt(prompt)
        n = check_count(n, "n", MAX_IMAGES)
        found = self.render(prompt, n, parse_size(size), image=image, **self.refuse_unsupported(params, ability))
        if len(found.images) != n or not all(isinstance(i, bytes) for i in found.images):
            raise ModelError(f"{type(self).__name__}.render returned {len(found.images)} images for n={n}")
        return found

    def render(self, prompt: str, n: int, size: tuple[int, int] | None, image: bytes | None = None,
               **params: Any) -> Images:
        raise NotImplementedError(f"{type(self).__name__} does not implement render()")


IMAGE = ModelType(
    name="image",
    schema=ImageRegistration,
    abilities=("text_to_image", "image_to_image"),
    routes=("/v1/images/generations", "/v1/images/variations"),
    ability_methods={"text2image": "text_to_image", "image2image": "image_to_image"},
)
