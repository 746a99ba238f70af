"""Help texts a person reads: every command described, no reST markup, no citation of missing documents; fast."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from llmstab.checkers.cli.main import COMMANDS, SUMMARIES, build_parser


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser(command)
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command]


def test_every_command_has_a_summary_and_a_module():
    assert set(SUMMARIES) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_help_is_plain_text_with_a_description(command):
    sub = _subparser(command)
    text = sub.format_help()
    assert sub.description, f"{command} has no description"
    assert "``" not in text and ":func:`" not in text and ":class:`" not in text
    assert "DESIGN" not in text


def test_profile_device_defaults_to_detecting_the_gpu():
    sub = _subparser("profile")
    device = next(a for a in sub._actions if a.dest == "device")
    assert device.default == "auto" and "cpu" in device.choices


def test_top_level_help_lists_every_command_without_importing_any():
    code = ("import sys; from llmstab.checkers.cli.main import build_parser; text = build_parser().format_help(); "
            "print(sorted(m for m in sys.modules if m.startswith('llmstab.checkers.cli.') and m != "
            "'llmstab.checkers.cli.main')); print(text)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    imported, text = out.split("\n", 1)
    assert imported == "[]"
    for name, summary in SUMMARIES.items():
        assert name in text and summary.split()[0] in text
    assert "``" not in text
