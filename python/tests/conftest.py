"""Where the other side lives: the Swift peer (ShmPeer), the shm CLI and the
C example, built by the Swift build the CI script runs first. Set
SHM_BUILD_DIR (default: <repo>/.build/debug)."""
import os
import shutil
import subprocess
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("SHM_BUILD_DIR", os.path.join(REPO, ".build", "debug"))


def executable(name):
    path = os.path.join(BUILD, name)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: build the package first (swift build)")
    return path


@pytest.fixture
def peer():
    return executable("ShmPeer")


@pytest.fixture
def shm_cli():
    return executable("shm")


@pytest.fixture
def name():
    """A service or segment name no other test uses."""
    return f"py{os.getpid()}.{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def c_frames(tmp_path_factory):
    """Examples/c/frames.c built with cc and pkg-config against libswiftshm."""
    if not shutil.which("cc") or not shutil.which("pkg-config"):
        pytest.skip("no cc or pkg-config")
    library = os.environ.get("SWIFTSHM_LIBRARY") or os.path.join(BUILD, "libswiftshm.so")
    directory = tmp_path_factory.mktemp("pc")
    with open(os.path.join(REPO, "c", "swiftshm.pc.in")) as template:
        text = template.read()
    text = (text.replace("@PREFIX@", REPO).replace("@LIBDIR@", os.path.dirname(library))
            .replace("@INCLUDEDIR@", os.path.join(REPO, "Sources", "CSwiftShm", "include")))
    (directory / "swiftshm.pc").write_text(text)
    env = dict(os.environ, PKG_CONFIG_PATH=str(directory))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "swiftshm"], env=env, check=True,
                           capture_output=True, text=True).stdout.split()
    binary = str(directory / "frames")
    subprocess.run(["cc", "-O2", "-Wall", "-Werror", os.path.join(REPO, "Examples", "c", "frames.c"), "-o", binary] + flags,
                   check=True)
    return binary
