"""The MIA-efficacy attack's SVC (bench/svc.py): the fast prediction is libsvm's to the element, the
kernel cache never changes the fit, and the cost estimate scales its calibration as documented."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.svm import SVC

from bench import svc


@pytest.mark.parametrize("seed", range(6))
def test_svc_predict_is_libsvm_predict(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(30, 600))
    x = np.r_[rng.beta(5, 1, n), rng.beta(4, 1.3, n)][:, None]
    if seed % 2:
        x = np.round(x, 2)  # duplicates and exact ties, as saturated confidences give
    attack = SVC(C=3, gamma="auto", kernel="rbf").fit(x, np.r_[np.ones(n), np.zeros(n)])
    queries = np.r_[rng.beta(4.5, 1, 700), x[:50, 0], attack.support_vectors_[:20, 0], 0.0, 1.0][:, None]
    assert np.array_equal(svc.svc_predict(attack, queries, chunk=64), attack.predict(queries))


def test_svc_predict_asks_libsvm_inside_the_band(monkeypatch):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, 1))
    attack = SVC(C=3, gamma="auto", kernel="rbf").fit(x, (x[:, 0] > 0).astype(int))
    queries = rng.normal(size=(300, 1))
    asked: list[int] = []
    libsvm = SVC.predict
    monkeypatch.setattr(SVC, "predict", lambda self, q: asked.append(len(q)) or libsvm(self, q))
    monkeypatch.setattr(svc, "EXACT_BAND", 0.0)  # nothing is close enough: numpy alone
    fast = svc.svc_predict(attack, queries)
    monkeypatch.setattr(svc, "EXACT_BAND", 10.0)  # every point is: libsvm for all of them
    slow = svc.svc_predict(attack, queries)
    assert asked == [300]
    assert np.array_equal(fast, slow) and np.array_equal(fast, libsvm(attack, queries))


def test_svc_predict_refuses_what_it_does_not_reproduce():
    x = np.linspace(0, 1, 40)[:, None]
    y = np.r_[np.zeros(20), np.ones(20)]
    with pytest.raises(ValueError, match="binary RBF SVC"):
        svc.svc_predict(SVC(kernel="linear").fit(x, y), x)
    with pytest.raises(ValueError, match="binary RBF SVC"):
        svc.svc_predict(SVC(kernel="rbf").fit(x, np.arange(40) % 3), x)
    attack = SVC(kernel="rbf").fit(x, y)
    with pytest.raises(ValueError, match=r"shape \[N, 1\]"):
        svc.svc_predict(attack, x[:, 0])
    with pytest.raises(ValueError, match="NaN or inf"):
        svc.svc_predict(attack, np.array([[np.nan]]))


def test_svc_kernel_cache_size_does_not_change_the_fit():
    rng = np.random.default_rng(11)
    n = 1500  # 3,000 columns of 12 KB: a 1 MB cache holds a few dozen, so most columns are recomputed
    x = np.r_[rng.beta(8, 1, n), rng.beta(6, 1.2, n)][:, None]
    y = np.r_[np.ones(n), np.zeros(n)]
    fits = [SVC(C=3, gamma="auto", kernel="rbf", cache_size=mb).fit(x, y) for mb in (1, svc.SVC_CACHE_MB, 200)]
    for other in fits[1:]:
        assert np.array_equal(other.support_, fits[0].support_)
        assert np.array_equal(other.dual_coef_, fits[0].dual_coef_)
        assert np.array_equal(other.intercept_, fits[0].intercept_)


def test_efficacy_seconds_scales_the_calibration(monkeypatch):
    clock = iter(range(1000))  # every reading of the clock is one second later: fit 1 s, predict 1 s
    monkeypatch.setattr(svc.time, "perf_counter", lambda: float(next(clock)))
    # n₀ = 1000 per side, 500 queries: fit 1·(4000/1000)² + predict 1·(500/500)·(4000/1000) = 20 s per attack
    assert svc.efficacy_seconds(4000, 500, features=2, draws=1, threads=1) == 40.0  # two attacks one after the other
    assert svc.efficacy_seconds(4000, 500, features=2, draws=1, threads=2) == 20.0  # side by side
    assert svc.efficacy_seconds(4000, 500, features=3, draws=1, threads=2) == 40.0
    assert svc.efficacy_seconds(4000, 500, features=2, draws=8, threads=2) == 160.0  # each feature's draws in turn
    assert svc.efficacy_seconds(300, 4000, features=2, draws=1, threads=1) == 2 * (1.0 + 4000 / 600)  # n₀ = 300
    for bad in ({"n_shadow": 0, "n_forget": 5}, {"n_shadow": 5, "n_forget": -1}, {"n_shadow": 5, "n_forget": 5, "threads": 0},
                {"n_shadow": 5, "n_forget": 5, "draws": 0}):
        with pytest.raises(ValueError, match="efficacy_seconds needs"):
            svc.efficacy_seconds(**{"features": 2, "draws": 1, **bad})
