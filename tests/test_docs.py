"""The documentation site builds with `mkdocs build --strict`: a broken link or a page missing from the
navigation fails it (what `make docs` runs)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_docs_build_strict(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    assert mkdocs is not None, "mkdocs is missing next to this python: pip install -e '.[dev]'"
    out = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "site" / "studies" / "sae_polysemy" / "index.html").exists()


def test_readme_is_short_and_links_only_existing_pages():
    import re

    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    for target in re.findall(r"\]\(((?!https?:)[^)#]+)", text):
        assert (ROOT / target).exists(), f"README links to a missing file: {target}"
