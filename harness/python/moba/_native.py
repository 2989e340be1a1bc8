"""The extension module _moba, built by the project's CMake (harness/python/CMakeLists.txt)."""

try:
    from . import _moba as native  # noqa: F401  (re-exported)
except ImportError as e:  # pragma: no cover - a message, not logic
    raise ImportError(
        "moba: the extension module _moba is not built or not on this path "
        f"({e}). Build it with `cmake --build build/release --target moba_python` and set "
        "PYTHONPATH=build/release/harness/python, or install with `cmake --install`."
    ) from e
