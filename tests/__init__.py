"""The provider's tests; the folders mirror the package, ``helpers`` holds shared test code."""
