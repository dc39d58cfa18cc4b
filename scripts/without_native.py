"""Run pytest as a machine without a C compiler would: the native Avro codec cannot be
imported, so taskplane.streams.serde falls back to its generated Python codecs.

    python scripts/without_native.py tests/streams/test_serde.py ...
"""

import os
import sys

import pytest

sys.modules["taskplane.streams._avro_native"] = None  # type: ignore[assignment]  # import -> ImportError

from taskplane.streams._avro_codegen import native_available  # noqa: E402

assert not native_available(), "the native codec was still importable"
# "CI must build the extension" is checked by the normal run; here it is absent on purpose.
os.environ.pop("CI", None)
sys.exit(pytest.main(["-p", "no:cacheprovider", *sys.argv[1:]]))
