"""Assemble the Debian package from the two PyInstaller bundles, with dpkg-deb.

    python packaging/build_deb.py [--dist dist] [--out dist]

Layout installed:
    /opt/storypulse/storypulse/            the CLI + server bundle (no Qt)
    /opt/storypulse/storypulse-desktop/    the desktop bundle
    /usr/bin/storypulse, /usr/bin/storypulse-desktop   symlinks into them
    /usr/share/applications/storypulse.desktop, the icon (SVG + 256 px PNG)
    /lib/systemd/system/storypulse-server.service, /usr/lib/sysusers.d/storypulse.conf
    /etc/storypulse/server.toml            the service's configuration (a conffile)
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LINUX = HERE / "linux"
ICONS = HERE / "icons"

# Shared libraries the bundles load from the system rather than carry: PyInstaller
# leaves out libc, libGL/libEGL and libxcb on purpose (found with `ldd` over the
# bundles). The bundled libraries come from the build machine, so they need its
# glibc or newer. Fonts: Qt finds them through fontconfig's configuration.
DEPENDS = ["libgl1", "libegl1", "libxcb1", "fontconfig-config"]
RECOMMENDS = ["fonts-dejavu-core"]

DESCRIPTION = """\
simulate the flow of agile work and watch it live
 storypulse stores stories made of tasks, works the tasks off with a pool of
 worker processes that grows and shrinks with the load, and publishes live
 statistics over ZeroMQ. The desktop app draws stories produced and completed
 per second, open and completed stories, the queue and the pool.
 .
 This package holds self-contained builds of the `storypulse` command (server,
 worker and command-line clients), the desktop app, and a systemd service
 (storypulse-server) that is installed but not enabled."""


def version() -> str:
    sys.path.insert(0, str(REPO))
    from storypulse import __version__

    return __version__


def glibc() -> str:
    name, ver = platform.libc_ver()
    return ver if name == "glibc" and ver else "2.31"


def architecture() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True,
                          text=True).stdout.strip()


def _copy(src: Path, dest: Path, mode: int = 0o644) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    dest.chmod(mode)


def _size_kib(root: Path) -> int:
    return sum(p.lstat().st_size for p in root.rglob("*") if not p.is_dir()) // 1024 + 1


def stage(dist: Path, root: Path, ver: str, arch: str) -> None:
    """Lay out the package's files under `root` (emptied first)."""
    if root.exists():
        shutil.rmtree(root)
    for bundle in ("storypulse", "storypulse-desktop"):
        if not (dist / bundle / bundle).exists():
            raise SystemExit(f"{dist / bundle} is not a built bundle; run packaging/build.py first")
        shutil.copytree(dist / bundle, root / "opt" / "storypulse" / bundle, symlinks=True)
    (root / "usr" / "bin").mkdir(parents=True)
    for name in ("storypulse", "storypulse-desktop"):
        (root / "usr" / "bin" / name).symlink_to(f"/opt/storypulse/{name}/{name}")

    _copy(LINUX / "storypulse.desktop", root / "usr/share/applications/storypulse.desktop")
    _copy(ICONS / "storypulse.svg", root / "usr/share/icons/hicolor/scalable/apps/storypulse.svg")
    _copy(ICONS / "storypulse.png", root / "usr/share/icons/hicolor/256x256/apps/storypulse.png")
    _copy(LINUX / "storypulse-server.service", root / "lib/systemd/system/storypulse-server.service")
    _copy(LINUX / "sysusers.conf", root / "usr/lib/sysusers.d/storypulse.conf")
    _copy(LINUX / "server.toml", root / "etc/storypulse/server.toml")
    doc = root / "usr/share/doc/storypulse"
    for name in ("README.md", "docs/install.md", "docs/protocol.md"):
        if (REPO / name).exists():
            _copy(REPO / name, doc / Path(name).name)
    (doc / "copyright").write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        "Upstream-Name: storypulse\nLicense: MIT\n"
        "Comment: the bundles also carry Python, Qt (LGPLv3), PySide6 (LGPLv3),\n"
        " pyqtgraph (MIT), NumPy (BSD), pyzmq and libzmq (BSD, MPL-2.0), peewee (MIT)\n"
        " and msgspec (BSD); their licence files are inside the bundles.\n")

    control = root / "DEBIAN"
    control.mkdir()
    (control / "control").write_text("\n".join([
        "Package: storypulse",
        f"Version: {ver}",
        f"Architecture: {arch}",
        "Maintainer: storypulse developers <maintainers@storypulse.invalid>",
        "Section: misc",
        "Priority: optional",
        f"Installed-Size: {_size_kib(root)}",
        f"Depends: libc6 (>= {glibc()}), {', '.join(DEPENDS)}",
        f"Recommends: {', '.join(RECOMMENDS)}",
        f"Description: {DESCRIPTION}",
        "",
    ]))
    (control / "conffiles").write_text("/etc/storypulse/server.toml\n")
    for script in ("postinst", "prerm", "postrm"):
        _copy(LINUX / script, control / script, 0o755)


def build_deb(dist: Path, out: Path, *, compression: str = "xz") -> Path:
    ver, arch = version(), architecture()
    root = REPO / "build" / "deb" / f"storypulse_{ver}_{arch}"
    stage(dist, root, ver, arch)
    out.mkdir(parents=True, exist_ok=True)
    deb = out / f"storypulse_{ver}_{arch}.deb"
    # --root-owner-group: files owned by root in the package, whoever builds it.
    subprocess.run(["dpkg-deb", "--root-owner-group", f"-Z{compression}", "--build", str(root), str(deb)],
                   check=True, stdout=subprocess.DEVNULL)
    return deb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=REPO / "dist", help="where the bundles are")
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="where the .deb goes")
    parser.add_argument("--compression", default=os.environ.get("STORYPULSE_DEB_COMPRESSION", "xz"),
                        choices=["xz", "gzip", "zstd", "none"], help="see packaging/build.py --help")
    args = parser.parse_args()
    print(build_deb(args.dist, args.out, compression=args.compression))


if __name__ == "__main__":
    main()
