"""Introspection of the ``kfp.toml`` models' field annotations (:mod:`compose_kfp.schema`), for the loader, the
problem reports and the key reference: what member types a field may hold."""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Union

__all__ = ["flatten_annotation"]


def flatten_annotation(annotation: Any) -> list[Any]:
    """The member types of a field annotation: ``Annotated[...]`` unwrapped and unions
    (``X | None``, ``Union[...]``) split, depth first in declaration order; anything else
    is returned as a one-element list (``list[str]`` stays ``[list[str]]``)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return flatten_annotation(typing.get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [t for a in typing.get_args(annotation) for t in flatten_annotation(a)]
    return [annotation]
