"""One app for the UI tests, on a temp copy of the embedded library (the repo's bricks/ is
never written), served on a free local port."""

import os
import shutil
import socket

import pytest

from composer.workspace import ROOT

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    from composer import Workspace

    if not (ROOT / "bricks" / "base" / "config.json").is_file():
        pytest.skip("default not built")
    root = tmp_path_factory.mktemp("ui-library")
    shutil.copytree(ROOT / "bricks", root / "bricks", ignore=shutil.ignore_patterns(".library.lock"))
    shutil.copytree(ROOT / "index", root / "bricks" / ".index")  # where `composer --bricks` looks for it
    return Workspace(root / "bricks")


@pytest.fixture(scope="session")
def runner(workspace):
    """The app's Composer and batcher; a wide gathering window so that requests sent together by
    the tests land in one engine batch even on a loaded machine."""
    from ui.chat import Runner

    return Runner(workspace.composer(), window_ms=250)


@pytest.fixture(scope="session")
def served(workspace, runner):
    """(url, app) of the launched UI."""
    from ui import build_app, launch

    app = build_app(workspace, runner=runner)
    _, url, _ = launch(app, port=free_port(), block=False)
    yield url.rstrip("/"), app
    app.close()
