"""A method that always raises, registered through $UNLEARNBENCH_PLUGINS (tests only)."""
from bench.registry import method


@method(uses=(), paper="test plugin", version=1)
def always_fails(model, data, *, device):
    """Raises on purpose, to test that a failing run is recorded and the sweep goes on."""
    raise RuntimeError("deliberate failure")
