"""Marker types for step functions (standard library only; importable in user code and inside images).

Annotate a step parameter with these to receive a *file path* instead of a value:

.. code-block:: python

    from compose_kfp.types import InputPath, OutputPath

    def train(dataset: InputPath("CSV"), n_estimators: int, model: OutputPath("Model")) -> float:
        ...

- ``InputPath`` / ``InputPath("TYPE")``: the parameter is a component input consumed
  through ``{inputPath: NAME}``; the function gets the path of a local file (or folder)
  as a ``str``. ``pathlib.Path`` works too and gives a ``Path``.
- ``OutputPath`` / ``OutputPath("TYPE")``: the parameter is a component *output*
  written through ``{outputPath: NAME}``; the function gets a path whose parent folder
  exists and must create the file (a missing output is an error).

The optional ``TYPE`` string becomes the KFP v1 type of the input or output
(``CSV``, ``Model``, ...). compose-kfp reads these annotations with :mod:`ast`,
so the markers only need to be importable; they carry no behaviour.
The KFP SDK's ``kfp.components.InputPath``/``OutputPath`` are recognised as well.
"""

from __future__ import annotations

__all__ = ["InputPath", "OutputPath"]


class _PathMarker:
    """Base of the markers: remembers the optional KFP type name; compares by class and type."""

    __slots__ = ("type",)

    def __init__(self, type: "str | None" = None) -> None:  # noqa: A002 - KFP's spelling
        self.type = type

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.type!r})" if self.type else f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.type == self.type  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.type))


class InputPath(_PathMarker):
    """Annotation: this parameter receives the path of an input file (``{inputPath: NAME}``)."""

    __slots__ = ()


class OutputPath(_PathMarker):
    """Annotation: this parameter receives the path where the function writes output ``NAME`` (``{outputPath: NAME}``)."""

    __slots__ = ()
