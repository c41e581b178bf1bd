"""The value types of the settings: strict conversions shared by config.toml and PSS_* text, and range checks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import AfterValidator, PlainSerializer, PlainValidator


# Value types. The same rules for TOML and environment text as before, stricter than pydantic's own coercion:
# a bool is never a number, an int never a float, and text is read as an int with base 0 (0x1F90, 1_000).
def _str(value: object) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"expected a string, got {value!r}")


def _int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            pass
    raise ValueError(f"expected an integer, got {value!r}")


def _float(value: Any) -> float:
    if not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    raise ValueError(f"expected a number, got {value!r}")


_BOOL_TEXT = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _BOOL_TEXT:
        return _BOOL_TEXT[value.strip().lower()]
    raise ValueError(f"expected true or false, got {value!r}")


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(_str(item) for item in value)
    raise ValueError(f"expected a list of strings, got {value!r}")


def _int_table(value: object) -> Mapping[str, int]:
    if isinstance(value, Mapping):
        return MappingProxyType({str(name): _int(number) for name, number in value.items()})
    raise ValueError(f"expected a table of name = integer, got {value!r}")


Str = Annotated[str, PlainValidator(_str)]
Int = Annotated[int, PlainValidator(_int)]
Float = Annotated[float, PlainValidator(_float)]
Bool = Annotated[bool, PlainValidator(_bool)]
Strings = Annotated[tuple[str, ...], PlainValidator(_strings)]
# Read-only; dumped as a dict because pydantic's serializer warns on a mappingproxy (and the tests turn warnings
# into errors).
IntTable = Annotated[Mapping[str, int], PlainValidator(_int_table), PlainSerializer(dict)]
# The same conversions by field annotation, for environment values (converted in the source to name the variable).
CONVERT: dict[Any, Callable[[Any], Any]] = {
    str: _str,
    int: _int,
    float: _float,
    bool: _bool,
    tuple[str, ...]: _strings,
    Mapping[str, int]: _int_table,
}


def check(ok: Callable[[Any], bool], reason: str) -> AfterValidator:
    """A range check run after the type check; the error reads `<section>.<key>: <reason>`."""

    def check(value: Any) -> Any:
        if not ok(value):
            raise ValueError(reason)
        return value

    return AfterValidator(check)


Positive = check(lambda value: value > 0, "must be positive")
NotNegative = check(lambda value: value >= 0, "must not be negative")
AtLeastOne = check(lambda value: value >= 1, "must be at least 1")
