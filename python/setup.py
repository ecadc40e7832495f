"""Builds libswiftshm.so (the C ABI, Swift runtime linked statically) from
the repository with `swift build` and puts it inside the package, so that
`pip install ./python` is the whole installation. Needs Swift 6.3 at
install time only; the installed package needs no Swift toolchain."""
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


class BuildWithLibrary(build_py):
    def run(self):
        prebuilt = os.environ.get("SWIFTSHM_LIBRARY")
        if prebuilt:
            library = prebuilt
        else:
            command = ["swift", "build", "-c", "release", "--product", "swiftshm", "-Xswiftc", "-static-stdlib"]
            subprocess.run(command, cwd=REPO, check=True)
            binary = subprocess.run(command + ["--show-bin-path"], cwd=REPO, check=True,
                                    capture_output=True, text=True).stdout.strip()
            library = os.path.join(binary, "libswiftshm.so")
        super().run()
        target = os.path.join(self.build_lib, "swiftshm")
        os.makedirs(target, exist_ok=True)
        shutil.copy2(library, os.path.join(target, "libswiftshm.so"))


setup(cmdclass={"build_py": BuildWithLibrary})
