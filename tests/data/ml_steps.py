"""Step functions passing a DataFrame, an array and a fitted scikit-learn model between steps (runtime tests)."""

from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression


def make_data(n: int) -> NamedTuple("Data", [("frame", pd.DataFrame), ("matrix", np.ndarray)]):
    """A labelled frame with one feature, and an integer matrix."""
    frame = pd.DataFrame({"x": np.arange(n, dtype=float), "label": ["low" if i < n // 2 else "high" for i in range(n)]})
    return frame, np.arange(n * 2, dtype=np.int64).reshape(n, 2)


def fit(frame: pd.DataFrame) -> LogisticRegression:
    """Fit a classifier of label on x."""
    return LogisticRegression().fit(frame[["x"]], frame["label"])


def check(model: LogisticRegression, frame: pd.DataFrame,
          matrix: np.ndarray) -> NamedTuple("Checked", [("predictions", list), ("matrix_sum", int), ("shape", list)]):
    """Use all three unmarshalled objects."""
    return list(model.predict(frame[["x"]])), int(matrix.sum()), list(matrix.shape)
