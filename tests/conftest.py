import os

# Before any QApplication exists: without a display the whole run would abort.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

from support import ServerProcess  # noqa: E402


@pytest.fixture
def server_factory(tmp_path):
    """Make servers on free ports with a temporary database; all are stopped at the end."""
    made: list[ServerProcess] = []

    def make(**options) -> ServerProcess:
        srv = ServerProcess(tmp_path / f"storypulse-{len(made)}.db", **options)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.kill9()


@pytest.fixture
def server(server_factory) -> ServerProcess:
    """A running server: 2 workers, estimates at 1/100 of their length."""
    return server_factory(time_scale=0.01).start()


@pytest.fixture
def inproc_factory(tmp_path):
    """Make servers in this process (tests/inproc.py) on temporary databases; closed at the end."""
    from inproc import InprocServer

    made: list[InprocServer] = []

    def make(**options) -> InprocServer:
        made.append(InprocServer(tmp_path / f"inproc-{len(made)}.db", **options))
        return made[-1]

    yield make
    for srv in made:
        srv.close()


@pytest.fixture
def flow_tab(qtbot):
    """Make Flow tabs on stand-in servers of a model (desktop_support.stand_in_flow_tab); all stopped at the end."""
    from desktop_support import stand_in_flow_tab, stop_all

    made: list = []
    yield lambda model, speed=20.0: stand_in_flow_tab(qtbot, made, model, speed)
    stop_all(made)


@pytest.fixture(autouse=True)
def qt_garbage_in_the_ui_thread(request):
    """A test with Qt objects collects cycles in the UI thread only, as the desktop app does (desktop/ui_gc.py):
    else a stand-in's or a request thread's allocation may collect an earlier test's tab, and destroy its
    QObjects in that thread (a segfault or a deadlock). Set up before the test's other fixtures, stopped after
    them: its full collection at the end runs here, with what they stopped."""
    if "qapp" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("qapp")
    from storypulse.desktop.ui_gc import UiThreadCollector

    collector = UiThreadCollector()
    yield
    collector.stop()


@pytest.fixture(autouse=True)
def light_theme_after():
    """A test that switches the desktop app's theme (a process-wide setting) leaves it light again."""
    yield
    import sys

    theme = sys.modules.get("storypulse.desktop.theme")
    if theme is not None and theme.current() is not theme.LIGHT:
        theme.use(theme.LIGHT)


# -- the installers, built once per session for tests/test_package.py and tests/test_installed.py
@pytest.fixture(scope="session")
def dist(tmp_path_factory):
    """The bundles and the .deb: STORYPULSE_DIST's (a built dist/), else built now (zstd)."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    from support import REPO

    given = os.environ.get("STORYPULSE_DIST")
    if given:
        return Path(given).resolve()
    try:
        import psycopg2  # noqa: F401  (the CLI bundle carries it)
        import PyInstaller  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"{exc.name} is missing: `make test-package` installs it "
                    "(or pip install -e '.[desktop,package,postgres]')")
    out = tmp_path_factory.mktemp("dist")
    # zstd: the same package as the release's xz, compressed in seconds instead of minutes.
    start = time.monotonic()
    build = subprocess.run(
        [sys.executable, str(REPO / "packaging" / "build.py"), "--dist", str(out), "--compression", "zstd"],
        cwd=REPO, capture_output=True, text=True, timeout=840,
    )
    assert build.returncode == 0, f"build failed:\n{build.stdout}\n{build.stderr[-4000:]}"
    print(f"\nbuilt in {time.monotonic() - start:.0f} s:\n{build.stdout}")
    return out


@pytest.fixture(scope="session")
def deb(dist):
    debs = sorted(dist.glob("storypulse_*.deb"))
    assert debs, f"no storypulse_*.deb in {dist}"
    return debs[-1]
