"""The C part of taskplane: the native Avro codecs (streams/_avro_native.c) and the
deciders' record copy (contract/_records_native.c).

Everything else is in pyproject.toml. ``optional=True``: without a C compiler the
install still succeeds; taskplane.streams.serde then runs generated Python codecs and
taskplane.contract.records to a generated Python copy.
"""

from setuptools import Extension, setup

FLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-Wno-cast-function-type"]

setup(
    ext_modules=[
        Extension(module, [f"{module.removeprefix('taskplane.').replace('.', '/')}.c"], include_dirs=["native"], depends=["native/slots.h"],
                  extra_compile_args=FLAGS, optional=True)
        for module in ("taskplane.streams._avro_native", "taskplane.contract._records_native")
    ]
)
