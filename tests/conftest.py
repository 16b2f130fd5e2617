import pytest
import torch

import scl.data.download as dl

# Unit tests use tiny tensors: one thread avoids oversubscription on small CI machines
# (training tests set their own thread count through the run settings).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """No test may reach the network: the default fetcher opens only file:// URLs.
    (tests/test_data_registry.py overrides this with a fetcher that refuses every URL.)"""
    real = dl.urlopen

    def guarded(url, *a, **k):
        assert str(url).startswith("file://"), f"test tried to reach the network: {url}"
        return real(url, *a, **k)

    monkeypatch.setattr(dl, "urlopen", guarded)
