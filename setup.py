"""The C part of taskplane (the native Avro codecs, streams/_avro_native.c) and the
package layout.

Everything else is in pyproject.toml. ``optional=True``: without a C compiler the
install still succeeds; taskplane.streams.serde then runs generated Python codecs.

One import namespace, ``taskplane``, over the checkout's folders (ARCHITECTURE.md
"Layout"): ``FOLDERS`` maps each part to its folder, and every folder with an
``__init__.py`` below them is a package, found here rather than listed. In a checkout a
symlink under taskplane/ stands for each part (docs/layers.md); tests/test_layout.py
checks that this map, the symlinks, the image's COPY lines and the import contracts agree.
"""

import os

from setuptools import Extension, setup

FOLDERS = {
    "taskplane": "taskplane",
    "taskplane.contract": "contract",
    "taskplane.streams": "streams",
    "taskplane.devstack": "devstack",
    "taskplane.processors": "processors",
    "taskplane.workers": "workers",
    "taskplane.schemas": "schemas",  # data only: the Avro schemas
    "taskplane._examples.document_pipeline": "examples/document-pipeline",
    "taskplane._examples.payment_processor": "examples/payment-processor",
}


def packages() -> list[str]:
    """Each part, and each folder below it with an ``__init__.py`` (symlinks are other
    parts, found through their own entry)."""
    found = []
    for package, folder in FOLDERS.items():
        found.append(package)
        for path, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(path, d)) and d != "__pycache__")
            if path != folder and "__init__.py" in files:
                found.append(".".join([package, *os.path.relpath(path, folder).split(os.sep)]))
    return sorted(set(found))


FLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-Wno-cast-function-type"]

if __name__ == "__main__":  # as setuptools runs it; tests/test_layout.py imports the map
    setup(
        packages=packages(),
        package_dir=FOLDERS,
        ext_modules=[
            Extension("taskplane.streams._avro_native", ["streams/_avro_native.c"], include_dirs=["native"],
                      depends=["native/slots.h"], extra_compile_args=FLAGS, optional=True),
        ],
    )
