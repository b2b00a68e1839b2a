"""The README's settings table lists exactly the settings the code reads."""

import re
from pathlib import Path

from app.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def documented_settings() -> set[str]:
    rows = re.findall(r"^\| `(LLMTAP_[A-Z0-9_]+)` \|", README.read_text(), re.MULTILINE)
    return set(rows)


def test_every_setting_documented():
    in_code = {f"LLMTAP_{name.upper()}" for name in Settings.model_fields}

    assert in_code - documented_settings() == set()


def test_no_stale_setting_documented():
    in_code = {f"LLMTAP_{name.upper()}" for name in Settings.model_fields}

    assert documented_settings() - in_code == set()


def test_default_header_timeout_fits_cold_load():
    assert Settings.model_fields["upstream_header_timeout_s"].default >= 300
