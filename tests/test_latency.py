"""The latency protocol: robust estimators, old stored protocols, interleaved re-timing, backends."""

from __future__ import annotations

import os
import statistics
import sys
import time
import types
from collections.abc import Iterable

import pytest
import torch

from objectives import Latency, LatencyProtocol, decode_state_bytes, measure_latency, measure_together
from objectives.latency import CLOCKS, ESTIMATORS
from search_space import Decoder, DecodeState, build_decoder, preset
from studies.settings import StudySettings

OLD_STORED_PROTOCOL = {"mode": "forward", "warmup": 5, "repeats": 30, "cpu_threads": 1}  # as 0.1.0 wrote it


class FakeClock:
    """A clock whose every timed call lasts the next of `durations_ms`."""

    def __init__(self, durations_ms: Iterable[float]):
        self.durations = iter(durations_ms)
        self.now = 0.0
        self.started = False

    def __call__(self) -> float:
        if self.started:
            self.now += next(self.durations) / 1000
        self.started = not self.started
        return self.now


def tiny_model() -> Decoder:
    return build_decoder(preset("gpt", vocab_size=11, block_size=8, n_layer=1, n_head=2, d_model=8))


def test_robust_estimators_ignore_slow_outliers_the_mean_does_not() -> None:
    timings = [2.0] * 20 + [30.0] * 4  # a busy machine only ever adds time
    assert ESTIMATORS["min"](timings) == ESTIMATORS["median"](timings) == ESTIMATORS["trimmed_mean"](timings) == 2.0
    assert statistics.fmean(timings) > 6


def test_latency_reports_the_protocols_estimate_and_spread(monkeypatch: pytest.MonkeyPatch) -> None:
    durations = [50.0, 50.0] + [3.0, 2.0, 4.0, 40.0, 2.5] * 2  # two warm-up calls, then ten timed
    monkeypatch.setitem(CLOCKS, "wall", FakeClock(durations))
    protocol = LatencyProtocol(warmup=2, repeats=10, clock="wall", estimator="min")
    latency = measure_latency(tiny_model(), protocol)
    assert latency.ms == pytest.approx(2.0)
    assert latency.min_ms == pytest.approx(2.0)
    assert latency.median_ms == pytest.approx(3.0)
    assert latency.repeats == 10 and latency.estimator == "min" and latency.backend == "torch"
    assert latency.relative_spread == pytest.approx((latency.p90_ms - latency.p10_ms) / 3.0)
    assert latency.load_average is not None and latency.load_average >= 0
    assert latency.peak_memory_bytes is None  # CPU
    assert set(latency.to_dict()) >= {"ms", "relative_spread", "load_average", "procs_running", "peak_memory_bytes"}


def test_thread_clock_counts_this_threads_cpu_time_not_waiting() -> None:
    model = tiny_model()
    model.forward = lambda *_: time.sleep(0.02)  # waits 20 ms without using the CPU, as a descheduled thread does
    assert measure_latency(model, LatencyProtocol(warmup=0, repeats=3, clock="thread")).median_ms < 5
    assert measure_latency(model, LatencyProtocol(warmup=0, repeats=3, clock="wall")).median_ms >= 20


def test_protocol_dicts_stored_by_the_old_version_still_construct() -> None:
    protocol = LatencyProtocol(**OLD_STORED_PROTOCOL)
    assert protocol.clock == "thread" and protocol.backend == "torch"
    assert LatencyProtocol(**protocol.to_dict()) == protocol
    assert LatencyProtocol(**{**OLD_STORED_PROTOCOL, "cpu_threads": 4}).clock == "wall"  # CPU time of 4 threads is no latency
    old_latency = Latency(2.0, 1.5, 3.0, 30, "cpu")  # as code that predates estimators builds it
    assert old_latency.ms == 2.0 and old_latency.estimator == "median"


@pytest.mark.parametrize("fields, message", [
    ({"mode": "decode", "backend": "onnxruntime"}, "decode.*torch backend"),
    ({"backend": "tensorrt"}, "unknown 'tensorrt'"),
    ({"estimator": "mean"}, "unknown 'mean'"),
    ({"clock": "thread", "cpu_threads": 2}, "cpu_threads 1"),
    ({"mode": "prefill"}, "'forward' or 'decode'"),
    ({"repeats": "30"}, "repeats: '30' must be a whole number from 1"),  # not a TypeError from a comparison
    ({"warmup": 1.5}, "warmup: 1.5 must be a whole number"),
    ({"cpu_threads": True}, "cpu_threads: True must be a whole number"),
    ({"repeats": 10**9}, "repeats: 1000000000 must be a whole number from 1 to 10,000"),
    ({"pin_cpu": "yes"}, "pin_cpu: expected true or false"),
    ({"mode": "decode", "decode_at": "end"}, "decode_at: unknown 'end'"),
    ({"decode_at": "end"}, "decode_at: unknown 'end'"),  # refused in forward mode too, not dropped unread
])
def test_protocols_that_cannot_be_measured_are_refused(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LatencyProtocol(**fields)


def test_measure_together_interleaves_rounds_in_rotated_order() -> None:
    models = {name: tiny_model() for name in "abc"}
    calls: list[str] = []
    for name, model in models.items():
        model.register_forward_hook(lambda *_, name=name: calls.append(name))
    latencies = measure_together(models, LatencyProtocol(warmup=1, repeats=4), rounds=3)
    blocks = [name for i, name in enumerate(calls) if i == 0 or calls[i - 1] != name]
    # warm-up a b c; round 1 from a, round 2 from b, round 3 from c
    assert blocks == list("abc" "abc" "bca" "cab")
    assert [latency.repeats for latency in latencies.values()] == [12, 12, 12]
    assert calls.count("a") == 1 + 12 + 2  # warm-up, timed, one untimed run opening each later block


def test_measure_latency_restores_threads_and_cpu_affinity() -> None:
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this OS")
    before = os.sched_getaffinity(0), torch.get_num_threads()
    measure_latency(tiny_model(), LatencyProtocol(warmup=0, repeats=2, pin_cpu=True, clock="wall", cpu_threads=2))
    assert (os.sched_getaffinity(0), torch.get_num_threads()) == before


def test_onnxruntime_backend_times_the_onnx_runner_not_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[tuple[int, int]] = []

    def onnx_runner(model: Decoder, idx: torch.Tensor, threads: int):
        return lambda: runs.append((idx.shape[1], threads))

    monkeypatch.setitem(sys.modules, "objectives.onnx", types.SimpleNamespace(onnx_runner=onnx_runner))
    model = tiny_model()
    model.register_forward_hook(lambda *_: pytest.fail("torch forward ran under the onnxruntime backend"))
    latency = measure_latency(model, LatencyProtocol(backend="onnxruntime", warmup=2, repeats=5))
    assert runs == [(8, 1)] * 7 and latency.backend == "onnxruntime" and latency.repeats == 5


@pytest.mark.parametrize("mode", ["forward", "decode"])
def test_both_modes_time_todays_blocks(modern_config, mode: str) -> None:
    latency = measure_latency(build_decoder(modern_config), LatencyProtocol(mode=mode, warmup=1, repeats=3))
    assert latency.repeats == 3 and latency.ms > 0


def held_bytes(state: DecodeState) -> int:
    return sum(t.nbytes for held in state.buffers.values() for t in (held if isinstance(held, tuple) else (held,)))


@pytest.mark.parametrize("decode_at, position", [("last", 12), ("middle", 7)])
def test_decode_mode_times_a_token_where_the_cache_is_full(modern_config, decode_at: str, position: int) -> None:
    model = build_decoder(modern_config)  # block_size 12; a window of 3 in layer 0
    calls: list[tuple[int, int, int]] = []  # (tokens fed, position after the call, bytes the state then holds)
    model.register_forward_hook(lambda _, args, __: calls.append((args[0].size(1), args[1].position,
                                                                   held_bytes(args[1]))))
    measure_latency(model, LatencyProtocol(mode="decode", decode_at=decode_at, warmup=0, repeats=2))
    prefill = position - 1
    assert [call[:2] for call in calls] == [(prefill, prefill), (1, position)] * 2
    full = decode_state_bytes(modern_config)  # every KV head's keys and values over the context, the window's last 3
    assert (calls[1][2] == full) == (decode_at == "last") and calls[1][2] <= full


def test_a_stored_decode_study_keeps_its_timed_position_and_forward_studies_still_compare() -> None:
    stored = StudySettings(latency=LatencyProtocol(mode="decode")).to_dict()
    assert stored["latency"]["decode_at"] == "last"  # what a new decode study records
    del stored["latency"]["decode_at"]  # as a study created before decode_at stored it
    assert StudySettings.from_dict(stored).latency.decode_at == "middle"  # timed after half the context, as before
    forward = StudySettings().to_dict()
    del forward["latency"]["decode_at"]
    # Forward mode times no position: an old forward study trains alike with a new one and reuses its results.
    assert StudySettings.from_dict(forward).latency == LatencyProtocol() and LatencyProtocol().decode_at is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_latency_records_peak_memory() -> None:
    model = tiny_model().to("cuda")
    latency = measure_latency(model, LatencyProtocol(warmup=1, repeats=3))
    assert latency.device.startswith("cuda") and latency.peak_memory_bytes > 0
