"""Build the optional C kernels (audiomask.native._lib); all other metadata lives in pyproject.toml.

The extension is optional: where no C compiler is available the package installs without it
and runs the same computations as PyTorch ops.

Packages are listed here because one of them lives outside ``audiomask/``: the top-level
``kernels/`` folder (fused Triton kernels) is installed as ``audiomask.kernels``, a mapping
that ``[tool.setuptools.packages.find]`` cannot express together with automatic discovery.
"""

from setuptools import Extension, find_namespace_packages, setup

setup(packages=find_namespace_packages(include=["audiomask*"]) + ["audiomask.kernels"],
      package_dir={"audiomask.kernels": "kernels"},
      ext_modules=[Extension("audiomask.native._lib", ["audiomask/native/passes.c", "audiomask/native/team.c",
                                                      "audiomask/native/tcn_stream.c"], optional=True,
                             depends=["audiomask/native/native.h"], extra_compile_args=["-O3", "-pthread"],
                             extra_link_args=["-pthread", "-ldl"])])
