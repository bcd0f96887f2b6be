"""Where the API key lives between sessions, and which URL and key win.

The key is kept out of Blender's preferences file (which people share and commit): a file `api_key`
in the add-on's user directory, mode 0600 in a 0700 directory. `ACT3_API_KEY` and `ACT3_API_URL`
in the environment win over everything, for render farms and CI.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .cache import write_private
from .client import DEFAULT_BASE_URL

KEY_FILE = "api_key"
ENV_KEY = "ACT3_API_KEY"
ENV_URL = "ACT3_API_URL"


def load_key(directory: str | os.PathLike[str]) -> str:
    """The saved key, or "" when there is none (or it cannot be read)."""
    try:
        return (Path(directory) / KEY_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def save_key(directory: str | os.PathLike[str], key: str) -> None:
    key = key.strip()
    if not key:
        clear_key(directory)
        return
    d = Path(directory)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # e.g. a directory we do not own; the file itself is 0600
        os.chmod(d, 0o700)
    write_private(d / KEY_FILE, key + "\n")


def clear_key(directory: str | os.PathLike[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        (Path(directory) / KEY_FILE).unlink()


def resolve(url_pref: str, key_pref: str, directory: str | os.PathLike[str] | None) -> tuple[str, str, str]:
    """`(url, key, source)`: source says where the key came from: "environment", "preferences",
    "file" or "none". The environment wins, then a key typed in the preferences, then the saved file."""
    url = os.environ.get(ENV_URL, "").strip() or url_pref.strip() or DEFAULT_BASE_URL
    env_key = os.environ.get(ENV_KEY, "").strip()
    if env_key:
        return url, env_key, "environment"
    if key_pref.strip():
        return url, key_pref.strip(), "preferences"
    saved = load_key(directory) if directory is not None else ""
    if saved:
        return url, saved, "file"
    return url, "", "none"
