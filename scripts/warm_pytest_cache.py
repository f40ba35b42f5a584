"""Write pytest's cache of assertion-rewritten modules of pytest-ftgate, once, at install time.

pytest rewrites every module of a plugin's package (all of ``pytest_ftgate``) and caches the result in
``__pycache__`` only where bytecode may be written: with PYTHONDONTWRITEBYTECODE set (CI images, this sandbox) each
session would parse and compile them again (~0.4 s of every `pytest suites` on 2 cores). This imports each module
once inside a pytest session with bytecode writing on; later sessions read that cache whatever the setting.
Run by scripts/install.sh as ``env -u PYTHONDONTWRITEBYTECODE python scripts/warm_pytest_cache.py``.
"""

from __future__ import annotations

import pkgutil
import sys
import tempfile
from pathlib import Path


def main() -> int:
    import pytest

    import pytest_ftgate

    names = sorted(m.name for m in pkgutil.walk_packages(pytest_ftgate.__path__, "pytest_ftgate."))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "test_ftgate_modules.py").write_text(
            "import importlib\n\nimport pytest\n\n\n@pytest.mark.parametrize('name', %r)\n"
            "def test_module_imports(name):\n    importlib.import_module(name)\n" % names)
        return int(pytest.main([tmp, "-q", "-p", "no:cacheprovider", "--rootdir", tmp,
                                "--ftgate-out", str(Path(tmp) / "out")]))


if __name__ == "__main__":
    sys.exit(main())
