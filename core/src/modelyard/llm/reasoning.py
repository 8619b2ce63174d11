"""Split a reasoning model's output into `reasoning_content` and `content` as it streams."""

from __future__ import annotations


class ReasoningSplitter:
    """Text between `start` and `end` tags is reasoning; the rest is content.

    When the prompt already opened the reasoning block (chat templates of some reasoning models do),
    pass `in_reasoning=True`: everything up to `end` is then reasoning.
    """

    def __init__(self, start: str, end: str, in_reasoning: bool = False):
        self.start, self.end = start, end
        self.in_reasoning = in_reasoning
        self.pending = ""

    def feed(self, delta: str) -> tuple[str, str]:
        text = self.pending + delta
        self.pending = ""
        reasoning, content = [], []
        while text:
            tag = self.end if self.in_reasoning else self.start
            index = text.find(tag)
            if index >= 0:
                (reasoning if self.in_reasoning else content).append(text[:index])
                text = text[index + len(tag):]
                self.in_reasoning = not self.in_reasoning
                continue
            keep = next((n for n in range(min(len(tag) - 1, len(text)), 0, -1) if text.endswith(tag[:n])), 0)
            (reasoning if self.in_reasoning else content).append(text[:len(text) - keep])
            self.pending = text[len(text) - keep:]
            break
        return "".join(reasoning), "".join(content)

    def flush(self) -> tuple[str, str]:
        out, self.pending = self.pending, ""
        return (out, "") if self.in_reasoning else ("", out)
