"""The collector's exception hierarchy, rooted in one class."""

from __future__ import annotations


class CollectorError(Exception):
    """Anything the collector itself refuses or fails to do."""


class ConfigError(CollectorError):
    """A config problem, phrased so the reader can fix the file without reading code."""

    def __init__(self, file: str, key: str, problem: str, example: str = "") -> None:
        self.file = file
        self.key = key
        self.problem = problem
        self.example = example
        text = f"{file}: {key}: {problem}"
        if example:
            text += f"\n  for example: {example}"
        super().__init__(text)
