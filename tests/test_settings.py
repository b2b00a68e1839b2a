"""Settings from LLMTAP_* variables: conversion, defaults and error messages."""

import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[1]


def problems(**environ: str) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(environ)
    return caught.value.problems


def test_unset_variables_keep_defaults():
    assert Settings.from_env({}) == Settings()


def test_empty_variable_keeps_default():
    settings = Settings.from_env({"LLMTAP_PROXY_PORT": "", "LLMTAP_PRICE_FILE": " "})

    assert settings.proxy_port == 8787
    assert settings.price_file is None


def test_values_converted_to_field_types():
    settings = Settings.from_env(
        {
            "LLMTAP_PROXY_PORT": "9000",
            "LLMTAP_UPSTREAM_IDLE_TIMEOUT_S": "2.5",
            "LLMTAP_STORE_IMAGES": "true",
            "LLMTAP_DATA_DIR": "/data",
            "LLMTAP_PRICE_FILE": "/data/prices.json",
            "LLMTAP_DASHBOARD_AUTH": "off",
        }
    )

    assert settings.proxy_port == 9000
    assert settings.upstream_idle_timeout_s == 2.5
    assert settings.store_images is True
    assert settings.spool_dir == Path("/data/spool")
    assert settings.price_file == Path("/data/prices.json")
    assert settings.dashboard_auth == "off"


def test_other_variables_ignored():
    assert Settings.from_env({"LLMTAP_NOT_A_SETTING": "x"}) == Settings()


def test_invalid_number_names_variable_and_value():
    [problem] = problems(LLMTAP_PROXY_PORT="80x")

    assert problem.startswith("LLMTAP_PROXY_PORT='80x': Expected `int`")
    assert problem.endswith("see the settings table in the README")


@pytest.mark.parametrize(
    ("variable", "value", "fragments"),
    [
        ("LLMTAP_PROXY_WORKERS", "0", ["LLMTAP_PROXY_WORKERS='0'", ">= 1"]),
        ("LLMTAP_DASHBOARD_AUTH", "maybe", ["LLMTAP_DASHBOARD_AUTH='maybe'"]),
        (
            "LLMTAP_UPSTREAM_URL",
            "ollama:11434",
            ["not an http(s) URL", "http://ollama:11434"],
        ),
    ],
    ids=["below-bound", "unknown-choice", "url-without-scheme"],
)
def test_invalid_value_explained(variable: str, value: str, fragments: list[str]):
    [problem] = problems(**{variable: value})

    for fragment in fragments:
        assert fragment in problem


def test_every_invalid_variable_listed():
    found = problems(LLMTAP_PROXY_PORT="x", LLMTAP_STORE_IMAGES="perhaps")

    assert [line.split("=")[0] for line in found] == [
        "LLMTAP_PROXY_PORT",
        "LLMTAP_STORE_IMAGES",
    ]


def test_placeholder_secret_rejected_without_echo():
    [problem] = problems(LLMTAP_DASHBOARD_PASSWORD="changeme")

    assert problem.startswith("LLMTAP_DASHBOARD_PASSWORD: a placeholder secret")
    assert "changeme" not in problem


def test_invalid_settings_exit_with_one_line_each():
    result = subprocess.run(
        [sys.executable, "-m", "app.migrate"],
        cwd=ROOT,
        env={"LLMTAP_PROXY_PORT": "x", "LLMTAP_WEB_PORT": "y", "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "llmtap: invalid settings:",
        "  LLMTAP_PROXY_PORT='x': Expected `int`, got `str`; see the settings table "
        "in the README",
        "  LLMTAP_WEB_PORT='y': Expected `int`, got `str`; see the settings table "
        "in the README",
    ]
