"""Audio: speech to text and text to speech (/v1/audio/transcriptions, /v1/audio/speech).

An engine subclasses `AudioEngine` and implements `transcribe_audio(audio, language, prompt) ->
Transcription` and/or `synthesize(text, voice, response_format, speed) -> Speech`, whose `audio` is
bytes or, streamed, an iterator of bytes; the base checks the arguments.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import InvalidRequest
from modelyard.types import MediaRegistration, ModelType, StrOrList
from modelyard.types.engine import EngineBase, check_bytes

SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")


class AudioRegistration(MediaRegistration):
    multilingual: bool = False
    language: StrOrList | None = None
    default_transcription_config: dict[str, Any] = {}


@dataclass
class Transcription:
    text: str
    language: str | None = None
    duration: float | None = None
    segments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Speech:
    audio: bytes
    format: str = "mp3"


class AudioEngine(EngineBase):
    #: The speech formats `synthesize` writes.
    speech_formats: tuple[str, ...] = SPEECH_FORMATS

    def transcribe(self, audio: bytes, language: str | None = None, prompt: str | None = None,
                   **params: Any) -> Transcription:
        audio = check_bytes(audio, "audio")
        if language is not None and not isinstance(language, str):
            raise InvalidRequest("language must be a language code such as 'en'.")
        return self.transcribe_audio(audio, language, prompt, **self.refuse_unsupported(params, "transcribe"))

    def speech(self, input: str, voice: str | None = None, response_format: str = "mp3", speed: float = 1.0,
               stream: bool = False, **params: Any) -> Speech | Iterator[bytes]:
        if not isinstance(input, str) or not input.strip():
            raise InvalidRequest("input must be the non-empty text to speak.")
        if response_format not in self.speech_formats:
            raise InvalidRequest(f"response_format must be one of {', '.join(self.speech_formats)}, "
                                 f"got {response_format!r}.")
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0.25 <= speed <= 4.0:
            raise InvalidRequest(f"speed must be a number from 0.25 to 4.0, got {speed!r}.")
        given = self.refuse_unsupported(params, "speech")
        if stream:
            return self.synthesize_stream(input, voice, response_format, float(speed), **given)
        return self.synthesize(input, voice, response_format, float(speed), **given)

    def transcribe_audio(self, audio: bytes, language: str | None, prompt: str | None,
                         **params: Any) -> Transcription:
        raise InvalidRequest(f"This model ({type(self).__name__}) does not transcribe audio.")

    def synthesize(self, text: str, voice: str | None, response_format: str, speed: float,
                   **params: Any) -> Speech:
        raise InvalidRequest(f"This model ({type(self).__name__}) does not synthesize speech.")

    def synthesize_stream(self, text: str, voice: str | None, response_format: str, speed: float,
                          **params: Any) -> Iterator[bytes]:
        """Speech as it is made; by default the whole of `synthesize` as one piece."""
        yield self.synthesize(text, voice, response_format, speed, **params).audio


AUDIO = ModelType(
    name="audio",
    schema=AudioRegistration,
    abilities=("transcribe", "speech"),
    routes=("/v1/audio/transcriptions", "/v1/audio/speech"),
    # the older names too: Xinference said audio-to-text and text-to-audio before v1.6
    ability_methods={"audio2text": "transcribe", "text2audio": "speech",
                     "audio-to-text": "transcribe", "text-to-audio": "speech"},
)
