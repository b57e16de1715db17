"""Text for calibration and eval: a local file or a file of a Hugging Face dataset repo
(``hf://datasets/ORG/NAME[@REVISION]/PATH``), read by its extension: ``.jsonl`` (the ``text`` field of
each line), ``.parquet`` (the ``text`` column; needs pyarrow), anything else as UTF-8 text.
Records are joined with a blank line. Hub files come through ``huggingface_hub.hf_hub_download``,
so its cache is shared and ``HF_HUB_OFFLINE=1`` reads from it without the network."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import InputError
from .tokens import read_text

HF_DATASET = re.compile(r"^hf://datasets/(?P<repo>[^/@]+/[^/@]+)(?:@(?P<rev>[^/]+))?/(?P<file>.+)$")
SEPARATOR = "\n\n"


def read_corpus(ref: str | Path) -> str:
    path = resolve(ref)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl(path, ref)
    if suffix == ".parquet":
        return _parquet(path, ref)
    return read_text(path)


def resolve(ref: str | Path) -> Path:
    """The local file behind ``ref``: itself, or the hub file in the cache (fetched if online)."""
    text = str(ref)
    if not text.startswith("hf://"):
        return Path(ref)
    m = HF_DATASET.match(text)
    if m is None:
        raise InputError(f"{text}: a hub file is hf://datasets/ORG/NAME/PATH (or NAME@REVISION/PATH)")
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                            RevisionNotFoundError)
    except ImportError:  # pragma: no cover - a runtime dependency
        raise InputError(f"{text}: huggingface_hub is not installed to fetch it") from None
    repo, rev, file = m["repo"], m["rev"], m["file"]
    try:
        return Path(hf_hub_download(repo, file, repo_type="dataset", revision=rev))
    except RevisionNotFoundError:
        raise InputError(f"{text}: revision {rev!r} not found in dataset {repo}") from None
    except RepositoryNotFoundError:
        raise InputError(f"{text}: no such dataset repository on the Hugging Face Hub (or it is private)") from None
    except LocalEntryNotFoundError:
        raise InputError(f"{text}: not in the local Hugging Face cache, and the Hub cannot be reached "
                         "(HF_HUB_OFFLINE is set or there is no network)") from None
    except EntryNotFoundError:
        raise InputError(f"{text}: dataset {repo} has no file {file!r}") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{text}: cannot fetch from the Hugging Face Hub: {e}") from None


def _jsonl(path: Path, ref: str | Path) -> str:
    texts = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{ref}: line {n} is not JSON ({e.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise InputError(f"{ref}: line {n} has no string field 'text'")
        texts.append(record["text"])
    return SEPARATOR.join(texts)


def _parquet(path: Path, ref: str | Path) -> str:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"{ref}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    try:
        schema = pq.read_schema(path)
        if "text" not in schema.names:
            raise InputError(f"{ref}: has no column 'text' (columns: {', '.join(schema.names)})")
        column = pq.read_table(path, columns=["text"]).column("text").to_pylist()
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise InputError(f"{ref}: cannot read Parquet: {e}") from None
    if not all(isinstance(t, str) for t in column):
        raise InputError(f"{ref}: column 'text' holds values that are not strings")
    return SEPARATOR.join(column)
