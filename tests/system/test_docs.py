"""The configuration reference in docs/ is generated from the binary's own table: check it is
current, so the docs never drift from what `serve` accepts."""
import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _bin():
    return str(ROOT / os.environ.get("SLUICE_BIN", "build/sluice"))


def test_configuration_reference_is_generated_from_the_table():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLUICE_", "REFLEX_EVENT_PROCESSOR_"))}
    out = subprocess.run([_bin(), "config", "--markdown"], env=env, capture_output=True,
                         text=True, check=True).stdout
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert out.strip() in doc, "docs/configuration.md is stale: regenerate it with " \
        "scripts/gen_config_doc.sh"
    for line in out.splitlines()[2:]:
        assert line.startswith("| `"), line
