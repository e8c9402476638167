"""House rules of the source layout."""

import subprocess
import sys

from conftest import ROOT


def test_platform_is_a_source_root_not_a_package():
    # platform/__init__.py would shadow the standard library module `platform` in Ray workers.
    assert not (ROOT / "platform" / "__init__.py").exists()


def test_import_platform_gives_stdlib_from_repo_root():
    code = "import sys; sys.path.insert(0, '.'); import platform; print(platform.__file__); platform.system()"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert str(ROOT) not in out.stdout
    assert out.stdout.strip().endswith("platform.py")


def test_packages_import_from_install():
    import jobs
    import robots
    import xlab

    assert (ROOT / "platform" / "xlab").samefile(xlab.__path__[0])
    assert jobs.__name__ == "jobs" and robots.__name__ == "robots"
