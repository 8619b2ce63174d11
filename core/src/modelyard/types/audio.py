"""Audio: speech to text and text to speech (/v1/audio/transcriptions, /v1/audio/speech)."""

from __future__ import annotations

from typing import Any

from modelyard.types import MediaRegistration, ModelType, StrOrList


class AudioRegistration(MediaRegistration):
    multilingual: bool = False
    language: StrOrList | None = None
    default_transcription_config: dict[str, Any] = {}


AUDIO = ModelType(
    name="audio",
    schema=AudioRegistration,
    abilities=("transcribe", "speech"),
    routes=("/v1/audio/transcriptions", "/v1/audio/speech"),
)
