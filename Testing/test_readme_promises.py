"""The README promises only what is true: its links and pictures exist, its figures match the model
cards, and what it says about coordinates matches the files the project writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from spinebrain.outputs import write_markups
from spinebrain.points import LabelledPoint

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_every_local_link_and_picture_exists():
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    local = [t for t in targets if not t.startswith(("http://", "https://", "mailto:"))]
    assert local, "the README links no local file"
    missing = [t for t in local if not (REPO / t).exists()]
    assert not missing, missing


def test_extension_metadata_urls_point_to_files_in_the_repository():
    cmake = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    urls = re.findall(r'set\(EXTENSION_(?:ICONURL|SCREENSHOTURLS) "([^"]+)"\)', cmake)
    assert len(urls) == 2
    for url in urls:
        relative = url.split("/main/", 1)[1]
        assert (REPO / relative).is_file(), url


def test_held_out_case_counts_match_the_model_cards():
    row = next(line for line in README.splitlines() if line.startswith("| held-out synthetic scans"))
    for region in ("lumbar", "cervical"):
        card = json.loads((REPO / "Resources" / "Models" / f"spine-label-{region}" / "model_card.json").read_text())
        assert f"{card['metrics']['cases']} {region}" in row, (region, card["metrics"]["cases"], row)


def test_what_the_readme_says_about_coordinates_is_what_the_files_hold(tmp_path):
    path = write_markups([LabelledPoint("L3", (10.0, 20.0, 30.0))], tmp_path / "p.mrk.json")
    markup = json.loads(path.read_text())["markups"][0]
    assert markup["coordinateSystem"] == "LPS" and markup["controlPoints"][0]["position"] == [-10.0, -20.0, 30.0]
    assert "`.mrk.json` files are written in LPS" in README
    assert "every point the project writes (markups, tables) is RAS" not in README
