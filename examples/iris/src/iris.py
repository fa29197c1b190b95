"""Iris classification: four plain, typed Python functions that compose-kfp turns into pipeline steps.

Nothing here knows about Kubeflow: each function can be called from a notebook
or a test. compose-kfp reads the signatures (without importing this file) to
make component interfaces; inside the image its runtime calls the function and
passes DataFrames and models between steps as marshalled artifacts.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, confusion_matrix
from sklearn.model_selection import train_test_split

DATA = Path(__file__).resolve().parent.parent / "data" / "iris.csv"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
LABEL = "species"


class Split(NamedTuple):
    train_set: pd.DataFrame
    test_set: pd.DataFrame
    n_rows: int


class Metrics(NamedTuple):
    accuracy: float
    confusion_matrix: list
    n_estimators: int


def load_data(test_size: float = 0.3, seed: int = 7) -> Split:
    """Load the iris measurements shipped in data/ and split them, stratified by species.

    Args:
        test_size: fraction of the rows held out for evaluation (0 < test_size < 1).
        seed: random seed of the split.
    """
    frame = pd.read_csv(DATA)
    train, test = train_test_split(frame, test_size=test_size, random_state=seed, stratify=frame[LABEL])
    return Split(train.reset_index(drop=True), test.reset_index(drop=True), len(frame))


def train(dataset: pd.DataFrame, n_estimators: int = 100, seed: int = 42) -> RandomForestClassifier:
    """Fit a random forest on the training split.

    Args:
        dataset: training rows, with the four measurements and the species.
        n_estimators: number of trees in the forest.
        seed: random seed of the forest.
    """
    model = RandomForestClassifier(n_estimators=n_estimators, random_state=seed)
    model.fit(dataset[FEATURES], dataset[LABEL])
    return model


def evaluate(model: RandomForestClassifier, test_set: pd.DataFrame) -> Metrics:
    """Score the trained model on the held-out split.

    Args:
        model: the classifier written by the train step.
        test_set: held-out rows.
    """
    predicted = model.predict(test_set[FEATURES])
    labels = sorted(test_set[LABEL].unique())
    matrix = confusion_matrix(test_set[LABEL], predicted, labels=labels).tolist()
    accuracy = float(accuracy_score(test_set[LABEL], predicted))
    print(f"accuracy: {accuracy:.4f}")
    return Metrics(accuracy, matrix, int(model.n_estimators))


def deploy(model: RandomForestClassifier, accuracy: float) -> str:
    """Publish the model; the pipeline runs this step only when the accuracy is above the `threshold` param.

    Args:
        model: the classifier written by the train step.
        accuracy: its held-out accuracy, from the evaluate step.
    """
    message = f"deployed a random forest of {len(model.estimators_)} trees (accuracy {accuracy:.4f})"
    print(message)
    return message
