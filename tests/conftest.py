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


@pytest.fixture(autouse=True)
def light_theme_after():
    """A test that switches the desktop app's theme (a process-wide setting) leaves it light again."""
    yield
    import sys

    theme = sys.modules.get("storypulse.desktop.theme")
    if theme is not None and theme.current() is not theme.LIGHT:
        theme.use(theme.LIGHT)
