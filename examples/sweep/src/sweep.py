"""A hyperparameter sweep: one random forest per value of a list param, trained in parallel, the best one picked.

Plain, typed functions (nothing here knows about Kubeflow). The iris measurements come with
scikit-learn (``sklearn.datasets.load_iris``), so the example needs no data folder.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split


class Split(NamedTuple):
    train_set: pd.DataFrame
    test_set: pd.DataFrame


class Best(NamedTuple):
    n_estimators: int
    accuracy: float
    scores: dict


def split(test_size: float = 0.3, seed: int = 7) -> Split:
    """Load the iris measurements bundled with scikit-learn and split them, stratified by species.

    Args:
        test_size: fraction of the rows held out for scoring.
        seed: random seed of the split.
    """
    frame = load_iris(as_frame=True).frame
    train, test = train_test_split(frame, test_size=test_size, random_state=seed, stratify=frame["target"])
    return Split(train.reset_index(drop=True), test.reset_index(drop=True))


def train_and_score(train_set: pd.DataFrame, test_set: pd.DataFrame, n_estimators: int, seed: int = 7) -> float:
    """Fit a random forest of `n_estimators` trees and return its held-out accuracy (one iteration of the sweep).

    Args:
        train_set: training rows.
        test_set: held-out rows.
        n_estimators: number of trees, the value this iteration tries.
        seed: random seed of the forest.
    """
    features = [c for c in train_set.columns if c != "target"]
    model = RandomForestClassifier(n_estimators=n_estimators, random_state=seed)
    model.fit(train_set[features], train_set["target"])
    accuracy = float(accuracy_score(test_set["target"], model.predict(test_set[features])))
    print(f"n_estimators={n_estimators}: accuracy {accuracy:.4f}")
    return accuracy


def pick_best(accuracies: list, candidates: list) -> Best:
    """Pick the candidate with the highest accuracy (the first one on a tie).

    Args:
        accuracies: one accuracy per iteration, in the order of `candidates` (collected from the loop; Argo
            passes each value as text, so they are converted here).
        candidates: the n_estimators values the sweep tried.
    """
    scores = {str(n): float(a) for n, a in zip(candidates, accuracies)}
    best = max(range(len(candidates)), key=lambda i: (float(accuracies[i]), -i))
    print(f"best: n_estimators={candidates[best]} with accuracy {float(accuracies[best]):.4f}")
    return Best(int(candidates[best]), float(accuracies[best]), scores)


def report(status: str) -> str:
    """The exit handler: runs after every other task, whatever happened, and reports the pipeline's status.

    Args:
        status: the pipeline's final status (`Succeeded`, `Failed` or `Error`).
    """
    message = f"sweep finished: {status}"
    print(message)
    return message
