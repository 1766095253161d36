"""Build the installers: both PyInstaller bundles, and on Linux the .deb.

    python packaging/build.py            (what `make package` runs)

Needs an environment where storypulse is installed with its desktop and
package extras: `pip install -e '.[desktop,package,postgres]'`. Everything goes to dist/;
PyInstaller's work files to build/pyinstaller (kept: a rebuild reuses them).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def size_mib(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
    return sum(p.stat().st_size for p in files) / 2**20


def stage(target: Path) -> None:
    """Install the project, not editable and without its dependencies, into `target`."""
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(REPO)],
                   check=True, cwd=REPO)
    shutil.rmtree(REPO / "build" / "lib", ignore_errors=True)  # setuptools' copy, not needed again


def build_bundles(dist: Path) -> None:
    stage(REPO / "build" / "stage")
    subprocess.run([
        sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
        "--distpath", str(dist), "--workpath", str(REPO / "build" / "pyinstaller"),
        str(HERE / "storypulse.spec"),
    ], check=True, cwd=REPO)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=REPO / "dist")
    parser.add_argument("--no-deb", action="store_true", help="bundles only")
    parser.add_argument("--compression", choices=["xz", "zstd", "gzip", "none"],
                        default=os.environ.get("STORYPULSE_DEB_COMPRESSION", "xz"),
                        help="of the .deb: xz (default; every dpkg reads it; minutes on two cores) "
                             "or zstd (seconds, ~40%% larger, dpkg >= 1.21.18: Debian 12, Ubuntu 22.04)")
    args = parser.parse_args()

    start = time.monotonic()
    build_bundles(args.dist)
    built = [args.dist / "storypulse", args.dist / "storypulse-desktop"]
    bundles_s = time.monotonic() - start
    if sys.platform.startswith("linux") and not args.no_deb:
        if shutil.which("dpkg-deb"):
            from build_deb import build_deb

            built.append(build_deb(args.dist, args.dist, compression=args.compression))
        else:
            print("dpkg-deb not found: no .deb built (apt-get install dpkg-dev)")
    total_s = time.monotonic() - start

    for path in built:
        print(f"{size_mib(path):8.1f} MiB  {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    print(f"bundles in {bundles_s:.0f} s, everything in {total_s:.0f} s")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
