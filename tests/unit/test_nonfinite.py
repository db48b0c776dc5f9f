"""Training that goes NaN or inf stops at the first bad step and says which step and what went.

``train`` exits 1 with one line and saves no model; ``compare`` reports the backend as
``nonfinite`` and still writes every report file, in strict JSON.
"""

from __future__ import annotations

from backendlab.results import NonFinite
from backendlab.training.nonfinite import NonFiniteWatch, nonfinite_word

NAN, INF = float("nan"), float("inf")


def test_nonfinite_word_names_the_first_bad_number():
    assert nonfinite_word(0.5) is None and nonfinite_word([1.0, 2.0]) is None
    assert nonfinite_word(NAN) == "nan" and nonfinite_word([1.0, -INF, NAN]) == "-inf"
    assert nonfinite_word("accuracy") is None  # not a number: nothing to check


def test_watch_names_the_loss_before_the_metrics_and_keeps_the_first():
    watch = NonFiniteWatch()
    assert not watch.check_logs(1, {"loss": 0.7, "accuracy": 0.5})
    assert watch.check_logs(2, {"accuracy": NAN, "loss": INF, "kind_loss": 0.3, "amount_loss": INF})
    assert watch.found == NonFinite(2, "loss", "amount_loss", "inf")
    assert watch.found.message == "training loss became inf at step 2 (in 'amount_loss')"
    assert watch.check_logs(3, {"loss": NAN}) and watch.found.step == 2  # the first stays


def test_watch_names_a_metric_when_the_loss_is_finite():
    watch = NonFiniteWatch()
    assert watch.check_logs(4, {"loss": 0.2, "kind_accuracy": 0.5, "amount_mae": NAN})
    assert watch.found.message == "training metric 'amount_mae' became nan at step 4"
