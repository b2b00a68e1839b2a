"""The README's settings table lists exactly the settings the code reads."""

import re
from pathlib import Path

import msgspec

from app.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def documented_settings() -> set[str]:
    rows = re.findall(r"^\| `(LLMTAP_[A-Z0-9_]+)` \|", README.read_text(), re.MULTILINE)
    return set(rows)


def test_every_setting_documented():
    in_code = {
        f"LLMTAP_{field.name.upper()}" for field in msgspec.structs.fields(Settings)
    }

    assert in_code - documented_settings() == set()


def test_no_stale_setting_documented():
    in_code = {
        f"LLMTAP_{field.name.upper()}" for field in msgspec.structs.fields(Settings)
    }

    assert documented_settings() - in_code == set()


def test_default_header_timeout_fits_cold_load():
    assert Settings().upstream_header_timeout_s >= 300
