"""A Python step whose file output feeds a third-party (non-Python) component."""

from __future__ import annotations

from compose_kfp.types import OutputPath


def make_corpus(n_lines: int, corpus: OutputPath("Text"), word: str = "kubeflow") -> int:
    """Write a small text file of numbered lines and return how many were written.

    Args:
        n_lines: number of lines to write.
        corpus: where the text file goes.
        word: the word repeated on every line.
    """
    with open(corpus, "w", encoding="utf-8") as out:
        for i in range(n_lines):
            out.write(f"{i + 1}: {word}\n")
    return n_lines
