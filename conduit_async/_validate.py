"""Client-side checks of arguments, before anything is sent.

The rules are the spec's (section 3): a bad id or name never reaches the
server, and the error names the argument.
"""

from __future__ import annotations

import re

from .errors import ValidationError

__all__ = ["company_id", "name", "optional_text", "path_segment", "positive_id"]

_COMPANY_ID = re.compile(r"[A-Za-z0-9]{1,1024}")
MAX_NAME = 1024
_MAX_SEGMENT = 1024
#: Integers whose digits (and sign) fit in a segment.
_SHORT_INTS = 10 ** (_MAX_SEGMENT - 1)
_SEGMENT = re.compile(rf"[A-Za-z0-9_\-.]{{1,{_MAX_SEGMENT}}}")


def company_id(value: object, argument: str = "company_id") -> str:
    """A company id: 1 to 1024 ASCII letters and digits (compared without regard to case)."""
    # Fast path first: this runs on every company-scoped call, including token cache hits.
    # For an ASCII string, isalnum() is exactly [A-Za-z0-9].
    if type(value) is str and 0 < len(value) <= 1024 and value.isascii() and value.isalnum():
        return value
    if not isinstance(value, str):
        raise ValidationError(argument, f"must be a string, not {type(value).__name__}")
    if not value:
        raise ValidationError(argument, "must not be empty")
    if len(value) > 1024:
        raise ValidationError(argument, f"is {len(value)} characters long; at most 1024")
    if _COMPANY_ID.fullmatch(value) is None:
        bad = next((c for c in value if not (c.isascii() and c.isalnum())), "?")
        raise ValidationError(
            argument, f"may only hold the letters A-Z, a-z and digits 0-9, not {bad!r}"
        )
    return value


def name(value: object, argument: str = "name", *, required: bool = False) -> str | None:
    """A company or workspace name: at most 1024 characters."""
    if value is None:
        if required:
            raise ValidationError(argument, "is required")
        return None
    if not isinstance(value, str):
        raise ValidationError(argument, f"must be a string, not {type(value).__name__}")
    if required and not value.strip():
        raise ValidationError(argument, "must not be empty")
    if len(value) > MAX_NAME:
        raise ValidationError(argument, f"is {len(value)} characters long; at most {MAX_NAME}")
    return value


def optional_text(value: object, argument: str) -> str | None:
    """An optional free-text field such as a workspace's `ext_id`."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(argument, f"must be a string, not {type(value).__name__}")
    if len(value) > MAX_NAME:
        raise ValidationError(argument, f"is {len(value)} characters long; at most {MAX_NAME}")
    return value


def positive_id(value: object, argument: str) -> int:
    """A numeric id (workspace, dashboard)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(argument, f"must be an integer, not {type(value).__name__}")
    if value < 1:
        raise ValidationError(argument, f"must be positive, not {value}")
    return value


def path_segment(value: object, argument: str) -> str:
    """An id that goes into a URL path (integration, credential): no `/`, `..` or blanks."""
    if type(value) is int and -_SHORT_INTS < value < _SHORT_INTS:
        return str(value)  # the usual case: digits and a sign, nothing to look for
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValidationError(argument, f"must be a string or integer, not {type(value).__name__}")
    try:
        text = str(value)
    except ValueError:  # an integer of more digits than Python will print (4,300)
        text = ""
    # "." and ".." are dot segments: URL normalisation would drop them and hit another path.
    if _SEGMENT.fullmatch(text) is None or ".." in text or text == ".":
        raise ValidationError(argument, "must be 1 to 1024 letters, digits, '_', '-' or '.'")
    return text
