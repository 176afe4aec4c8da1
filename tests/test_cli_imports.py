"""`nerf-app VERB` imports that verb's module only (docs/design.md), so one broken verb cannot break the
others and `nerf-app --help` stays fast."""
from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = ("import sys; from nerf_app.cli import build_parser; build_parser({argv!r}); "
         "print(' '.join(sorted(m for m in sys.modules if m.startswith('nerf_app.commands.'))))")


@pytest.mark.parametrize("argv, expected", [
    ([], ""), (["--help"], ""), (["info"], "nerf_app.commands.info"),
    (["--debug", "train", "x"], "nerf_app.commands.arguments nerf_app.commands.train"),
])
def test_only_the_chosen_verb_is_imported(argv, expected):
    out = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out == expected.split()


def test_every_verb_still_parses_its_own_flags():
    from nerf_app.cli import VERBS, build_parser
    for verb in VERBS:
        parser = build_parser([verb, "--help"])
        assert parser.verb_parsers[verb].format_help().count("--") > 1, verb
