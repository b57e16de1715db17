"""Hugging Face Hub sources: ``org/name`` or ``org/name@revision`` where a folder is expected.

Only the files a conversion needs are fetched (configs, safetensors, tokenizer and other side
files), through ``huggingface_hub.snapshot_download``, so its cache is shared with transformers
and ``HF_HUB_OFFLINE=1`` works from a populated cache. Snapshot files are symlinks into the
repo's ``blobs/``; the checkpoint reader is told to trust links inside that repo folder only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import InputError

REPO_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<rev>[\w./-]+))?$")
ALLOW = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.py", "*.md", "LICENSE*", "*.tiktoken"]


def is_repo_id(text: str) -> bool:
    return not Path(text).exists() and REPO_ID.match(str(text)) is not None


def resolve(src: str | os.PathLike) -> tuple[Path, Path | None]:
    """(model folder, folder its symlinks may point into): a local path as it is, a repo id
    through the Hugging Face cache (downloading what is missing unless offline)."""
    text = str(src)
    if not is_repo_id(text):
        return Path(src), None
    m = REPO_ID.match(text)
    repo, rev = m["repo"], m["rev"]
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                            RevisionNotFoundError)
    except ImportError:  # pragma: no cover - a runtime dependency
        raise InputError(f"{text}: not a folder, and huggingface_hub is not installed to fetch it") from None
    try:
        folder = Path(snapshot_download(repo, revision=rev, allow_patterns=ALLOW))
    except RevisionNotFoundError:
        raise InputError(f"{text}: revision {rev!r} not found in {repo}") from None
    except RepositoryNotFoundError:
        raise InputError(f"{text}: no such model repository on the Hugging Face Hub (or it is private)") from None
    except (LocalEntryNotFoundError, EntryNotFoundError):
        raise InputError(f"{text}: not in the local Hugging Face cache, and the Hub cannot be reached "
                         "(HF_HUB_OFFLINE is set or there is no network)") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{text}: cannot fetch from the Hugging Face Hub: {e}") from None
    # .../models--org--name/snapshots/<commit>: links point into .../models--org--name/blobs
    return folder, folder.parent.parent


def check_push_target(repo: str) -> None:
    """Refuse a malformed --push-to-hub id before any work is done."""
    if not REPO_ID.match(repo) or "@" in repo:
        raise InputError(f"{repo}: not a repo id like org/name")


def push(folder: str | os.PathLike, repo: str, private: bool = False) -> str:
    """Upload a finished model folder to ``repo`` (created if missing); returns the repo URL."""
    check_push_target(repo)
    try:
        from huggingface_hub import HfApi
        api = HfApi()
        url = api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model",
                          commit_message="Upload converted checkpoint (repack)")
    except ImportError:  # pragma: no cover - a runtime dependency
        raise InputError("--push-to-hub needs huggingface_hub") from None
    except Exception as e:  # noqa: BLE001 - network/auth errors of any kind become one line
        from .errors import OutputError
        raise OutputError(f"{repo}: upload failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                          f"the converted folder is kept at {folder}") from None
    return str(url)
