"""The C part of taskplane: the native Avro codecs (streams/_avro_native.c).

Everything else is in pyproject.toml. ``optional=True``: without a C compiler the
install still succeeds and streams.serde runs its generated Python codecs.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "streams._avro_native",
            ["streams/_avro_native.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers",
                                "-Wno-cast-function-type"],
            optional=True,
        )
    ]
)
