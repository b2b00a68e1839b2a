"""Make the repository root importable, so `app.capture` loads without installing."""

import sys
from pathlib import Path

REPO_DIR = str(Path(__file__).resolve().parents[2])
if REPO_DIR not in sys.path:
    sys.path.insert(0, REPO_DIR)
