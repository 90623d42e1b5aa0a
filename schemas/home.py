"""Where embedq keeps its files: pulled models, the embedded broker and database (EMBEDQ_HOME)."""
from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = "~/.cache/embedq"


def embedq_home() -> Path:
    return Path(os.environ.get("EMBEDQ_HOME") or DEFAULT_HOME).expanduser()
