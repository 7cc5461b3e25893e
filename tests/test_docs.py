"""The README documents every setting and every configuration key, and nothing else."""

from __future__ import annotations

import re

from tests.conftest import ROOT
from workers.configuration import KEYS

README = (ROOT / "README.md").read_text()
SETTINGS_SOURCE = (ROOT / "workers" / "settings.py").read_text()


def table_after(heading: str) -> str:
    return README.split(heading, 1)[1].split("\n## ", 1)[0]


def test_every_setting_is_in_the_settings_table() -> None:
    in_code = set(re.findall(r'get\("(RELAY_[A-Z_]+)"\)', SETTINGS_SOURCE))
    in_table = set(re.findall(r"^\| `(RELAY_[A-Z_]+)`", table_after("## Settings"), re.M))
    assert in_code == in_table
    assert len(in_code) == 12


def test_every_configuration_key_is_documented() -> None:
    table = table_after("## Instance configuration")
    documented = set(re.findall(r"`([a-z]+(?:\.[a-z_]+)+)`", table))
    assert set(KEYS) <= documented


def test_quick_start_is_exactly_two_commands() -> None:
    block = table_after("## Quick start").split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in block.strip().splitlines()] == ["scripts/dev", "scripts/test"]
