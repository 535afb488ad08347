"""Config classes that compare by value, and records filled by keyword."""

from typing import Any


class ValueConfig:
    """Equality, ``repr`` and no hash from the fields named in ``__slots__``."""

    __slots__: Any = ()

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class Record:
    """A record whose every field (``__slots__``) is given by keyword."""

    __slots__: Any = ()

    def __init__(self, **fields: Any) -> None:
        for name in self.__slots__:
            setattr(self, name, fields[name])
