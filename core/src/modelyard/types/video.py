"""Video: text to video (/v1/video/generations).

An engine subclasses `VideoEngine` and implements `render_video(prompt, n, size) -> Videos`
(encoded videos, MP4 unless it says otherwise); the base checks the arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelyard.errors import ModelError
from modelyard.types import MediaRegistration, ModelType
from modelyard.types.engine import EngineBase, check_count, check_prompt, parse_size

MAX_VIDEOS = 4


class VideoRegistration(MediaRegistration):
    default_generate_config: dict[str, Any] = {}


@dataclass
class Videos:
    videos: list[bytes]
    format: str = "mp4"


class VideoEngine(EngineBase):
    def text_to_video(self, prompt: str, n: int = 1, size: str | None = None, **params: Any) -> Videos:
        prompt = check_prompt(prompt)
        n = check_count(n, "n", MAX_VIDEOS)
        found = self.render_video(prompt, n, parse_size(size), **self.refuse_unsupported(params, "text_to_video"))
        if len(found.videos) != n:
            raise ModelError(f"{type(self).__name__}.render_video returned {len(found.videos)} videos for n={n}")
        return found

    def render_video(self, prompt: str, n: int, size: tuple[int, int] | None, **params: Any) -> Videos:
        raise NotImplementedError(f"{type(self).__name__} does not implement render_video()")


VIDEO = ModelType(
    name="video",
    schema=VideoRegistration,
    abilities=("text_to_video",),
    routes=("/v1/video/generations",),
    ability_methods={"text2video": "text_to_video"},
)
