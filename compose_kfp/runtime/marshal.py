"""Marshalling of values that are not JSON (DataFrames, arrays, fitted models) between steps.

Standard library only (Python 3.8+); numpy, pandas, pyarrow and joblib are used
when the value needs them and they are importable in the image, never imported
otherwise.

Layout of a marshalled artifact: the output path is a **folder** holding the data
file and a metadata file next to it, so the reading side knows how to load it::

    <outputPath>/
        compose-kfp.json     {"format": "parquet", "file": "data.parquet", "python_type": "pandas.core.frame.DataFrame", ...}
        data.parquet

Formats, in the order they are tried when writing:

==================  ============================  ==================================================
format              for                           file / reader
==================  ============================  ==================================================
``npy``             ``numpy.ndarray`` (not object  ``data.npy``; ``numpy.load(allow_pickle=False)``
                    dtype)
``parquet``         ``pandas.DataFrame`` when      ``data.parquet``; ``pandas.read_parquet``
                    ``pyarrow`` is importable
``pandas-pickle``   other pandas objects, or a     ``data.pkl``; ``pandas.read_pickle``
                    DataFrame parquet refuses or
                    whose column names are not
                    all strings
``joblib``          any other object when          ``data.joblib``; ``joblib.load``
                    ``joblib`` is importable
``pickle``          any other object               ``data.pkl``; :func:`pickle.load` (protocol 4)
==================  ============================  ==================================================

A reader given a plain file instead of such a folder (for example the output of a
third-party component) recognises ``.npy``, parquet and pickle files by their
first bytes.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import platform
import shutil
import sys
from typing import Any, Dict, Optional

__all__ = ["METADATA_FILE", "MarshalError", "write_artifact", "read_artifact", "is_artifact_dir"]

#: Name of the metadata file written next to the data.
METADATA_FILE = "compose-kfp.json"

_PICKLE_PROTOCOL = 4  # readable by every Python 3.4+


class MarshalError(Exception):
    """An artifact cannot be written or read (unknown format, library missing in the image, bad file)."""


def _optional_module(name: str) -> Any:
    """Import ``name`` if it is installed, else ``None``."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _required_module(name: str, fmt: str, what: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise MarshalError("{} was written as {!r}, which needs the Python package '{}'; add it to the image's "
                           "requirements".format(what, fmt, name))


def _type_name(value: Any) -> str:
    cls = type(value)
    return "{}.{}".format(cls.__module__, cls.__qualname__)


def _version(module_name: str) -> Optional[str]:
    module = sys.modules.get(module_name)
    return getattr(module, "__version__", None) if module is not None else None


def write_artifact(value: Any, path: str) -> Dict[str, Any]:
    """Marshal ``value`` into the folder ``path`` (created, replaced if it exists) and return its metadata.

    The metadata (also written to ``path/compose-kfp.json``) has ``format``, ``file``
    (name of the data file in the folder), ``python_type``, ``python`` (the writer's
    version) and ``library``/``library_version`` when a library wrote it.

    Raises:
        MarshalError: the value cannot be pickled (the message names its type).
    """
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)
    os.makedirs(path)
    meta: Dict[str, Any] = {
        "python_type": _type_name(value),
        "python": platform.python_version(),
    }
    np = sys.modules.get("numpy")
    pd = sys.modules.get("pandas")
    if np is not None and isinstance(value, np.ndarray) and value.dtype != object:
        meta.update(format="npy", file="data.npy", library="numpy", library_version=_version("numpy"))
        np.save(os.path.join(path, "data.npy"), value, allow_pickle=False)
    elif pd is not None and isinstance(value, pd.DataFrame) and _write_parquet(value, path):
        meta.update(format="parquet", file="data.parquet", library="pandas", library_version=_version("pandas"),
                    engine="pyarrow")
    elif pd is not None and isinstance(value, (pd.DataFrame, pd.Series, pd.Index)):
        meta.update(format="pandas-pickle", file="data.pkl", library="pandas", library_version=_version("pandas"))
        value.to_pickle(os.path.join(path, "data.pkl"))
    else:
        joblib = _optional_module("joblib")
        try:
            if joblib is not None:
                meta.update(format="joblib", file="data.joblib", library="joblib",
                            library_version=_version("joblib"))
                joblib.dump(value, os.path.join(path, "data.joblib"))
            else:
                meta.update(format="pickle", file="data.pkl")
                with open(os.path.join(path, "data.pkl"), "wb") as f:
                    pickle.dump(value, f, protocol=_PICKLE_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise MarshalError("cannot serialize a value of type {}: {}".format(_type_name(value), exc))
    meta = {k: v for k, v in meta.items() if v is not None}
    with open(os.path.join(path, METADATA_FILE), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    return meta


def _write_parquet(frame: Any, folder: str) -> bool:
    """Write ``frame`` as parquet with pyarrow; ``False`` (and nothing left behind) if that is not possible."""
    if _optional_module("pyarrow") is None:
        return False
    columns = frame.columns
    if getattr(columns, "nlevels", 1) != 1 or not all(isinstance(c, str) for c in columns):
        return False  # parquet stores column names as strings: it would not round-trip
    target = os.path.join(folder, "data.parquet")
    try:
        frame.to_parquet(target, engine="pyarrow")
        return True
    except Exception:  # noqa: BLE001 - pyarrow raises many types (ArrowInvalid, ValueError, TypeError ...)
        if os.path.exists(target):
            os.remove(target)
        return False


def is_artifact_dir(path: str) -> bool:
    """Whether ``path`` is a folder written by :func:`write_artifact`."""
    return os.path.isfile(os.path.join(path, METADATA_FILE))


def read_artifact(path: str, what: str = "artifact", plain: bool = False) -> Any:
    """Load the value marshalled at ``path`` (a folder from :func:`write_artifact`, or a plain data file).

    Args:
        path: the folder, or a ``.npy``/parquet/pickle file.
        what: how to name the value in messages (``input 'model'``).
        plain: the parameter takes any object (``Any``/``object``): a file in none of those formats
            (a literal argument, which Argo passes as a raw artifact, or a third-party component's
            output) is read as UTF-8 text and given as its JSON value when it parses as JSON, else as
            the text (bytes when it is not UTF-8).

    Raises:
        MarshalError: ``path`` does not exist, has an unknown format, or needs a library
            that is not installed (the message names ``what`` and the library).
    """
    if is_artifact_dir(path):
        try:
            with open(os.path.join(path, METADATA_FILE), encoding="utf-8") as f:
                meta = json.load(f)
            fmt = meta["format"]
            data = os.path.join(path, meta["file"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise MarshalError("{}: {} is not valid compose-kfp metadata: {}".format(
                what, os.path.join(path, METADATA_FILE), exc))
        return _load(fmt, data, what)
    if os.path.isdir(path):
        raise MarshalError("{}: {} is a folder without {}; it was not written by compose-kfp".format(
            what, path, METADATA_FILE))
    if not os.path.isfile(path):
        raise MarshalError("{}: {} does not exist".format(what, path))
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\x93NUMPY"):
        return _load("npy", path, what)
    if head.startswith(b"PAR1"):
        return _load("parquet", path, what)
    if head[:1] == b"\x80":
        return _load("joblib" if _optional_module("joblib") is not None else "pickle", path, what)
    if plain:
        with open(path, "rb") as f:
            raw = f.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw
        try:
            return json.loads(text)
        except ValueError:
            return text
    raise MarshalError("{}: {} is neither a compose-kfp artifact folder nor a .npy, parquet or pickle file".format(
        what, path))


def _load(fmt: str, data: str, what: str) -> Any:
    try:
        if fmt == "npy":
            return _required_module("numpy", fmt, what).load(data, allow_pickle=False)
        if fmt == "parquet":
            _required_module("pyarrow", fmt, what)
            return _required_module("pandas", fmt, what).read_parquet(data)
        if fmt == "pandas-pickle":
            return _required_module("pandas", fmt, what).read_pickle(data)
        if fmt == "joblib":
            return _required_module("joblib", fmt, what).load(data)
        if fmt == "pickle":
            with open(data, "rb") as f:
                return pickle.load(f)
    except MarshalError:
        raise
    except (OSError, ValueError, EOFError, pickle.UnpicklingError, ImportError, AttributeError) as exc:
        raise MarshalError("{}: cannot load {} ({}): {}: {}".format(what, data, fmt, type(exc).__name__, exc))
    raise MarshalError("{}: unknown format {!r} in {}".format(what, fmt, METADATA_FILE))
