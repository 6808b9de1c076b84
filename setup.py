"""Build the optional C kernels (audiomask._native); all metadata lives in pyproject.toml.

The extension is optional: where no C compiler is available the package installs without it
and runs the same computations as PyTorch ops.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("audiomask._native", ["audiomask/_native.c"], optional=True,
                             extra_compile_args=["-O3"])])
