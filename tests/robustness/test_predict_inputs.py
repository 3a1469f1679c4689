"""Hostile requests to the served model and hostile files to ``audioclf predict``: a request cannot
strand a worker, a request stops at its budget, a bad record never costs the good ones, and no
answer or table carries a traceback, a server path, an object's address or a terminal escape."""

from __future__ import annotations

import base64
import csv
import io
import json
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from mlflow.pyfunc.scoring_server import predictions_to_json
from tests.deploy.conftest import train_tiny

from audioclf.deploy import predict
from audioclf.deploy.model import from_checkpoint
from audioclf.deploy.predictor import Budget, PredictError, Stopped, Timings, predict_recordings
from audioclf.deploy.pyfunc import REQUEST, AudioclfModel, Limits, Request, predict_frame
from audioclf.features.stream import array_blocks

READER = "audioclf-predict-reader"
EVERY = {"min_score": 0.0}  # every window's top label: a good record has rows


@pytest.fixture(scope="module")
def checkpoint(tiny_cache, tmp_path_factory) -> Path:
    """A one-epoch model of the shrunk synthetic set (what it answers does not matter here)."""
    return train_tiny(tiny_cache, tmp_path_factory.mktemp("model") / "best.pt", epochs=1)


@pytest.fixture(scope="module")
def served(checkpoint) -> AudioclfModel:
    """The pyfunc as a server holds it, with the default limits."""
    served = AudioclfModel()
    served.model, served.limits = from_checkpoint(checkpoint), Limits()
    return served


def _tone(seconds: float, rate: int = 16000, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)


def _good(seconds: float = 2.0) -> dict:
    return {"samples": _tone(seconds).tolist(), "sample_rate": 16000}


def _in_thread(fn, timeout: float):
    """``fn()`` in a daemon thread (a hung call must not hang the test run): (done, result)."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(value=fn()), daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive(), result.get("value")


def _readers_gone(timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not any(t.name == READER for t in threading.enumerate()):
            return True
        time.sleep(0.05)
    return False


def _clean_answer(answer: pd.DataFrame) -> None:
    """No traceback, server path, object address or terminal escape in any error."""
    for error in answer["error"].astype(str):
        assert "Traceback" not in error and "object at 0x" not in error and "\x1b" not in error
        assert "/tmp" not in error and str(Path.cwd()) not in error


def test_six_huge_batch_requests_strand_nothing_and_a_good_request_is_answered(served):
    frame = pd.DataFrame([_good()])
    bad = [
        threading.Thread(
            target=served.predict, args=(None, frame, {"batch_size": 10**7}), daemon=True
        )
        for _ in range(6)
    ]
    for thread in bad:
        thread.start()
    for thread in bad:
        thread.join(30)
    assert not any(t.is_alive() for t in bad), "a request with a huge batch_size never returned"
    done, answer = _in_thread(lambda: served.predict(None, frame, {"batch_size": 10**7}), 30)
    assert done and list(answer["error"]) == [
        "batch_size must be an integer in [1, 1024], got 10000000"
    ]
    done, answer = _in_thread(lambda: served.predict(None, frame, EVERY), 30)
    assert done and (answer["error"] == "").all() and len(answer) == 2  # two 1-s windows
    assert _readers_gone()


def test_a_cancelled_call_stops_decoding_and_scoring(checkpoint):
    model = from_checkpoint(checkpoint)
    cancel, timings = threading.Event(), Timings()
    sources = [
        ("short", lambda rate: array_blocks(_tone(2.0), 16000, rate)),
        ("long", lambda rate: array_blocks(_tone(600.0), 16000, rate)),  # 600 windows
    ]
    names = []
    start = time.monotonic()
    with pytest.raises(Stopped, match="cancelled"):
        for rec in predict_recordings(
            model, sources, budget=Budget(cancel=cancel), timings=timings
        ):
            names.append(rec.name)
            cancel.set()  # the client is gone after the first answer
    assert names == ["short"]
    assert timings.windows < 100 and time.monotonic() - start < 10
    assert _readers_gone(1.0)


def test_a_request_past_its_deadline_answers_what_it_finished_and_stops(served):
    long = np.tile(_tone(1.0), 1800)  # 30 min, one window a batch: seconds past the deadline
    frame = pd.DataFrame([_good(), {"samples": long, "sample_rate": 16000}])
    start = time.monotonic()
    answer = predict_frame(served.model, frame, {**EVERY, "batch_size": 1}, Limits(deadline_s=0.8))
    assert time.monotonic() - start < 3.8
    assert (answer[answer["input"] == 0]["error"] == "").all()
    late = answer[answer["input"] == 1]
    assert len(late) == 1 and late["error"].iloc[0].startswith(
        "not scored: the request ran past its deadline (0.8 s, AUDIOCLF_SERVE_DEADLINE_S)"
    )
    assert _readers_gone(1.0)


def test_the_served_request_s_arrival_and_abandonment_bound_its_work(served):
    """Under audioclf serve the deadline counts from the request's arrival (its body's reading
    and parsing included), and a request already answered (MLflow's 504) is not worked on."""
    frame = pd.DataFrame([_good()])
    request = Request(arrived=time.monotonic() - 50.0, abandoned=threading.Event())
    token = REQUEST.set(request)  # as RequestBounds sets it; the scoring thread inherits it
    try:
        late = served.predict(None, frame, EVERY)
        request = Request(arrived=time.monotonic(), abandoned=threading.Event())
        REQUEST.set(request)
        request.abandoned.set()
        gone = served.predict(None, frame, EVERY)
    finally:
        REQUEST.reset(token)
    assert list(late["error"]) == [
        "not scored: the request ran past its deadline (45 s, AUDIOCLF_SERVE_DEADLINE_S)"
    ]
    assert list(gone["error"]) == ["not scored: the request was cancelled"]
    answer = served.predict(None, frame, EVERY)  # no request around it: from the call on
    assert (answer["error"] == "").all() and len(answer) == 2


def test_oversized_requests_are_refused_record_by_record(served):
    wav = io.BytesIO()
    sf.write(wav, _tone(40.0), 16000, format="WAV", subtype="PCM_16")  # 1.2 MB
    frame = pd.DataFrame(
        [
            _good(),
            {"samples": _tone(5.0, rate=22050).tolist(), "sample_rate": 1},  # 110 250 "seconds"
            {"audio_base64": base64.b64encode(wav.getvalue()).decode()},
            _good(),
            {"samples": _tone(10.0), "sample_rate": 16000},  # within each cap, over the total
        ]
    )
    answer = predict_frame(served.model, frame, EVERY, Limits(max_audio_s=10, max_request_mb=1.0))
    errors = answer.groupby("input")["error"].first()
    assert errors[0] == errors[3] == ""
    assert "110250 s, over the request's cap of 10 s of audio" in errors[1]
    assert errors[2].startswith("audio_base64: 1.2 MB of audio puts the request over its cap")
    assert errors[4] == "over the request's cap of 10 s of audio"
    # the defaults fit an hour of 48-kHz stereo 16-bit audio
    hour = 3600 * 48000 * 2 * 2
    assert Limits().max_audio_s >= 3600 and Limits().max_request_mb * 2**20 >= hour
    with pytest.raises(Exception, match="AUDIOCLF_SERVE_MAX_AUDIO_S must be a positive number"):
        Limits.from_environ({"AUDIOCLF_SERVE_MAX_AUDIO_S": "nan"})
    assert Limits.from_environ({"MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT": "20"}).deadline_s == 15


def test_bad_records_get_their_reason_and_the_good_ones_their_answer(served):
    not_audio = base64.b64encode(b"hello, this is not audio").decode()
    frame = pd.DataFrame(
        [
            _good(),
            {"samples": _tone(1.0).tolist(), "sample_rate": 0},
            {"samples": _tone(1.0).tolist(), "sample_rate": -16000},
            {"samples": [1e30] * 16000, "sample_rate": 16000},
            {"samples": [1e300] * 16000, "sample_rate": 16000},
            {"audio_base64": not_audio},
            {"audio_base64": "%%% not base64 %%%"},
            {"sample_rate": 16000},
            _good(),
        ]
    )
    answer = served.predict(None, frame, EVERY)
    errors = answer.groupby("input")["error"].first()
    assert len(errors) == len(frame) and errors[0] == errors[8] == ""
    assert (answer["input"] == 0).sum() == 2 and (answer["input"] == 8).sum() == 2
    assert errors[1] == "sample_rate must be an integer in [1, 1000000] Hz, got 0.0"
    assert errors[2] == "sample_rate must be an integer in [1, 1000000] Hz, got -16000.0"
    assert errors[3].startswith("non-finite scores") and "[-1, 1]" in errors[3]
    assert errors[4].startswith("samples: non-finite")
    assert errors[5].startswith("audio_base64: unreadable") and "the audio" in errors[5]
    assert errors[6].startswith("audio_base64 is not base64")
    assert errors[7] == "a record needs audio_base64, or samples with their sample_rate"
    _clean_answer(answer)
    # as the server sends it: strict JSON (no NaN), ranks as integers
    out = io.StringIO()
    predictions_to_json(answer, out)
    rows = json.loads(out.getvalue(), parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert [r["rank"] for r in rows["predictions"] if r["input"] == 0] == [1, 1]
    assert {r["score"] for r in rows["predictions"] if r["input"] == 1} == {None}


@pytest.mark.parametrize(
    "params, reason",
    [
        ({"min_score": float("nan")}, "min_score must be a number in [0, 1], got nan"),
        ({"min_score": 2.0}, "min_score must be a number in [0, 1], got 2.0"),
        ({"top_k": -1}, "top_k must be an integer in [1, 6], got -1"),
        ({"top_k": 0}, "top_k must be an integer in [1, 6], got 0"),
        ({"overlap_s": 1.0}, "overlap_s must be in [0, 1) s"),
        ({"overlap_s": -0.5}, "overlap_s must be in [0, 1) s"),
        ({"overlap_s": float("nan")}, "overlap_s must be in [0, 1) s"),
        ({"batch_size": 0}, "batch_size must be an integer in [1, 1024], got 0"),
        ({"batch_size": -3}, "batch_size must be an integer in [1, 1024], got -3"),
        ({"speed": 1}, "unknown params ['speed']"),
    ],
)
def test_bad_params_answer_every_record_with_the_range(served, params, reason):
    answer = served.predict(None, pd.DataFrame([_good(), _good()]), params)
    assert list(answer["input"]) == [0, 1]
    assert all(e.startswith(reason) for e in answer["error"]), list(answer["error"])
    _clean_answer(answer)


def _wav(path: Path, samples: np.ndarray, subtype: str = "PCM_16") -> str:
    sf.write(path, samples, 16000, subtype=subtype)
    return str(path)


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_predict_refuses_a_huge_batch_size_at_once(checkpoint, tmp_path):
    clip = _wav(tmp_path / "a.wav", _tone(2.0))
    args = [clip, "--model", str(checkpoint), "--out", str(tmp_path / "out")]
    done, _ = _in_thread(
        lambda: pytest.raises(PredictError, predict.main, [*args, "--batch-size", "10000000"]), 60
    )
    assert done, "audioclf predict --batch-size 10000000 hung"
    with pytest.raises(PredictError, match=r"--batch-size must be an integer in \[1, 1024\]"):
        predict.main([*args, "--batch-size", "0"])


def test_a_float_wav_too_loud_for_the_front_end_is_listed_as_failed(checkpoint, tmp_path):
    noise = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    loud = _wav(tmp_path / "loud.wav", 1e20 * noise, subtype="FLOAT")
    good = _wav(tmp_path / "good.wav", _tone(2.0))
    out = tmp_path / "out"
    predict.main([loud, good, "--model", str(checkpoint), "--out", str(out)])
    failed = _csv(out / "failed.csv")
    assert [r["file"] for r in failed] == [loud] and "non-finite" in failed[0]["reason"]
    summary = _csv(out / "summary.csv")
    assert {r["file"] for r in summary} == {good}
    assert "nan" not in (out / "summary.csv").read_text()


def test_terminal_escapes_never_reach_the_tables(checkpoint, tmp_path):
    hostile = tmp_path / "x\x1b[2J\x1b]0;pwned\x07.wav"
    hostile.write_bytes(b"not audio at all")
    good = _wav(tmp_path / "good.wav", _tone(2.0))
    out = tmp_path / "out"
    predict.main([str(hostile), good, "--model", str(checkpoint), "--out", str(out)])
    (row,) = _csv(out / "failed.csv")
    assert row["reason"].startswith("unreadable") and "\x1b" not in row["reason"]
    assert "\x07" not in row["reason"]


@pytest.mark.parametrize("head", ["../outside", "/etc", "sub/../../x"])
def test_a_head_path_outside_the_checkpoints_folder_is_not_logged(checkpoint, tmp_path, head):
    from audioclf.deploy.model import ModelError
    from audioclf.deploy.pyfunc import log_model
    from audioclf.models.checkpoint import load_checkpoint, save_checkpoint

    network, ckpt = load_checkpoint(checkpoint)
    keep = ("labels", "norm", "params", "input_shape", "in_channels", "frontend")
    crafted = tmp_path / "fold_0" / "best.pt"
    save_checkpoint(
        crafted,
        model=network,
        model_name=ckpt["model_name"],
        model_config=network.cfg,
        sklearn_model=head,
        **{k: ckpt[k] for k in keep},
    )
    with pytest.raises(ModelError, match="outside its own folder"):
        log_model(crafted)


def test_a_failure_inside_scoring_answers_without_a_traceback(served, caplog):
    import dataclasses

    def broken(windows):
        raise RuntimeError(f"bug in {Path(__file__)}")

    model = dataclasses.replace(served.model, frontend=broken)
    answer = predict_frame(model, pd.DataFrame([_good(), _good()]), EVERY)
    assert (
        list(answer["error"])
        == ["not scored: an internal error (its traceback is in the server's log)"] * 2
    )
    _clean_answer(answer)
    assert "bug in" in caplog.text  # the server's log has it
