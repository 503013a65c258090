"""Registries: the one place where the names of interchangeable parts are looked up.

Every choice a user makes by name (a curvature kind, a classical solver, a QLSA model, a
hardware profile, a task, an optimizer, a policy) is an entry of one :class:`Registry`. The CLI
reads its choices from the registries, and an unknown name gets one error that lists the
registered names, wherever it was given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
    """A name that is not registered; the message lists the registered names."""


class Registry(Mapping[str, T], Generic[T]):
    """An ordered, read-only-after-registration mapping from names to entries.

    ``what`` names the kind of entry in error messages (``"qlsa"``, ``"hardware"``, ...), so that
    ``REGISTRY["nope"]`` raises ``UnknownNameError("qlsa must be one of a, b; got 'nope'")``.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None) -> T | Callable[[T], T]:
        """Add ``entry`` under ``name``; without ``entry``, return a decorator that adds it."""
        if entry is None:
            def decorator(obj: T) -> T:
                self.register(name, obj)
                return obj

            return decorator
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.what} names must be non-empty strings, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: object) -> str:
        return f"{self.what} must be one of {', '.join(self._entries)}; got {name!r}"

    def check(self, name: object) -> str:
        """Return ``name`` if it is registered, else raise :class:`UnknownNameError`."""
        self[name]  # type: ignore[index]
        return name  # type: ignore[return-value]

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._entries)})"
