import os
import tempfile

pytest_plugins = ["pytester"]

# The harness's tests keep the oracle's reference cache to themselves (and out of the home folder);
# the CLI subprocesses they start inherit it.
os.environ.setdefault("CONFORMANCE_CACHE_DIR", tempfile.mkdtemp(prefix="conformance-test-cache-"))
