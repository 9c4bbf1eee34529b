"""The `/` filter language: `user:alice state:running,pending queue:gpu words`.

`field:value[,value]` keeps items whose field equals one of the values (case
insensitive, prefixes allowed, so `state:run` works); bare words must each appear
somewhere in the row. Every view supplies how to read fields and text off its items.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Filter:
    fields: dict[str, tuple[str, ...]] = field(default_factory=dict)
    words: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.fields or self.words)


def parse_filter(text: str, known_fields: frozenset[str]) -> Filter:
    """Splits `text` into field constraints and words; unknown `x:y` tokens are words."""
    fields: dict[str, tuple[str, ...]] = {}
    words: list[str] = []
    for token in text.lower().split():
        name, sep, values = token.partition(":")
        if sep and name in known_fields and values:
            wanted = tuple(value for value in values.split(",") if value)
            fields[name] = fields.get(name, ()) + wanted
        else:
            words.append(token)
    return Filter(fields=fields, words=tuple(words))


@dataclass(frozen=True)
class FilterSpec(Generic[T]):
    """How one view exposes its items to the filter language."""

    fields: Callable[[T], Mapping[str, str]]
    text: Callable[[T], str]
    names: frozenset[str]

    def predicate(self, text: str) -> Callable[[T], bool] | None:
        """The test an item must pass, or None when the filter is empty."""
        wanted = parse_filter(text, self.names)
        if not wanted:
            return None

        def matches(item: T) -> bool:
            values = self.fields(item)
            for name, options in wanted.fields.items():
                value = values.get(name, "").lower()
                if not any(value.startswith(option) for option in options):
                    return False
            if wanted.words:
                haystack = self.text(item).lower()
                return all(word in haystack for word in wanted.words)
            return True

        return matches
