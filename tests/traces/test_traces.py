"""Trace loaders (each format, malformed rows with line numbers), transforms, to-vllm output."""

from __future__ import annotations

import json
import statistics

import pytest

from camel_vllm.traces import TraceFormatError, alpaca_like, detect_format, load_trace, write_timed_trace
from camel_vllm.traces import transforms
from camel_vllm.traces.timed_trace import VLLM_CHUNK_HASH_SIZE

AZURE = "TIMESTAMP,ContextTokens,GeneratedTokens\n" \
        "2023-11-16 18:15:46.6805900,374,44\n" \
        "2023-11-16 18:15:50.9951690,396,109\n" \
        "2023-11-16 18:15:48.5000000,10,0\n"


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_azure_offsets_sorted_and_fraction_read(tmp_path):
    tr = load_trace(_write(tmp_path, "a.csv", AZURE))
    assert [r.arrival_s for r in tr.requests] == pytest.approx([0.0, 1.81941, 4.3145790])
    assert [(r.prompt_tokens, r.output_tokens) for r in tr.requests] == [(374, 44), (10, 1), (396, 109)]


@pytest.mark.parametrize("row,expect", [
    ("2023-11-16 18:15:50,abc,4", "a.csv:3: ContextTokens='abc' is not an integer"),
    ("2023-11-16 18:15:50,3", "a.csv:3: expected 3 fields, got 2"),
    ("16/11/2023,3,4", "a.csv:3: TIMESTAMP='16/11/2023' is not"),
    ("2023-11-16 18:15:50,5,-2", "a.csv:3: GeneratedTokens=-2 must be >= 0"),
])
def test_azure_malformed_row_names_file_and_line(tmp_path, row, expect):
    text = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,374,44\n" + row + "\n"
    path = _write(tmp_path, "a.csv", text)
    with pytest.raises(TraceFormatError) as err:
        load_trace(path)
    assert expect in str(err.value) and "\n" not in str(err.value)


def test_mooncake_ms_and_hash_ids(tmp_path):
    text = '{"timestamp": 0, "input_length": 600, "output_length": 20, "hash_ids": [1, 2]}\n' \
           '{"timestamp": 2500, "input_length": 30, "output_length": 5, "hash_ids": [3]}\n'
    tr = load_trace(_write(tmp_path, "mooncake_trace.jsonl", text))
    assert detect_format(tr.source) == "mooncake"
    assert tr.requests[1].arrival_s == pytest.approx(2.5)
    assert tr.requests[0].hash_ids == (1, 2)


def test_jsonl_malformed(tmp_path):
    text = '{"timestamp": 0, "input_length": 6, "output_length": 2}\n\n{"timestamp": 1, "input_length": 6}\n'
    with pytest.raises(TraceFormatError, match=r"t.jsonl:3: missing key 'output_length'"):
        load_trace(_write(tmp_path, "t.jsonl", text))
    with pytest.raises(TraceFormatError, match=r"u.jsonl:1: not valid JSON"):
        load_trace(_write(tmp_path, "u.jsonl", "{oops\n"))


@pytest.mark.parametrize("name", ["mooncake_trace.jsonl", "timed.jsonl"])
def test_a_negative_timestamp_is_refused_as_burstgpt_refuses_it(tmp_path, name):
    """Issue 23: JSONL traces took a negative timestamp (the trace then started before it began)
    where BurstGPT refuses it; now both name the file, the line and the value in the same words."""
    text = '{"timestamp": 0, "input_length": 6, "output_length": 2}\n' \
           '{"timestamp": -1.5, "input_length": 6, "output_length": 2}\n'
    with pytest.raises(TraceFormatError) as err:
        load_trace(_write(tmp_path, name, text))
    assert str(err.value).endswith(f"{name}:2: timestamp=-1.5 must be >= 0")
    burst = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n-1.5,GPT-4,6,2,8,API log\n"
    with pytest.raises(TraceFormatError) as err:
        load_trace(_write(tmp_path, "b.csv", burst))
    assert str(err.value).endswith("b.csv:2: Timestamp=-1.5 must be >= 0")


def test_burstgpt(tmp_path):
    text = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n" \
           "5,ChatGPT,472,18,490,Conversation log\n" \
           "7.5,GPT-4,1087,0,1087,API log\n"
    tr = load_trace(_write(tmp_path, "b.csv", text))
    assert [r.arrival_s for r in tr.requests] == [0.0, 2.5]
    assert tr.requests[1].output_tokens == 1
    bad = text + "9,GPT-4,x,3,3,API log\n"
    with pytest.raises(TraceFormatError, match=r"b.csv:4: Request tokens='x' is not an integer"):
        load_trace(_write(tmp_path, "b.csv", bad))


def test_unknown_format_is_one_line(tmp_path):
    with pytest.raises(TraceFormatError, match="x.txt:1: unknown trace format"):
        load_trace(_write(tmp_path, "x.txt", "hello\n"))


def test_timed_trace_round_trip_matches_vllm_expansion(tmp_path):
    src = load_trace(_write(tmp_path, "a.csv", AZURE))
    out = str(tmp_path / "t.jsonl")
    assert write_timed_trace(src, out) == 3
    rows = [json.loads(line) for line in open(out)]
    assert rows[0]["timestamp"] == 0.0
    for row, req in zip(rows, src.requests, strict=False):
        # vLLM expands each id to 16 tokens and stops at input_length: enough ids, never too few
        assert len(row["hash_ids"]) * VLLM_CHUNK_HASH_SIZE >= row["input_length"] == req.prompt_tokens
        assert row["output_length"] == req.output_tokens
    all_ids = [h for row in rows for h in row["hash_ids"]]
    assert len(all_ids) == len(set(all_ids))
    back = load_trace(out, "timed_trace")
    assert [(r.prompt_tokens, r.output_tokens) for r in back.requests] == \
           [(r.prompt_tokens, r.output_tokens) for r in src.requests]
    assert [r.arrival_s for r in back.requests] == pytest.approx([r.arrival_s for r in src.requests], abs=1e-6)


def test_target_rps_keeps_burstiness():
    tr = alpaca_like(300, rate_per_s=3.0, seed=3, poisson=True)
    gaps = [b.arrival_s - a.arrival_s for a, b in zip(tr.requests, tr.requests[1:], strict=False)]
    out = transforms.target_rps(tr, 0.5)
    gaps2 = [b.arrival_s - a.arrival_s for a, b in zip(out.requests, out.requests[1:], strict=False)]
    assert transforms.mean_rate_per_s(out.requests) == pytest.approx(0.5)
    cv = statistics.pstdev(gaps) / statistics.mean(gaps)
    assert statistics.pstdev(gaps2) / statistics.mean(gaps2) == pytest.approx(cv)
    assert "0.5 req/s" in out.notes[-1]


def test_window_first_and_clip():
    tr = alpaca_like(100, rate_per_s=1.0, seed=0)
    w = transforms.window(tr, 10.0, 20.0)
    assert len(w) == 10 and w.requests[0].arrival_s == 0.0 and w.requests[0].request_id == "10"
    assert len(transforms.first(tr, 7)) == 7
    with pytest.raises(ValueError, match="holds no request"):
        transforms.window(tr, 500.0, 600.0)
    c = transforms.clip_tokens(tr, max_context_tokens=50, max_output_tokens=30)
    assert all(r.output_tokens <= 30 and r.prompt_tokens + r.output_tokens <= 50 for r in c.requests)


def test_alpaca_like_is_seeded_and_short():
    a, b, c = alpaca_like(200, seed=1), alpaca_like(200, seed=1), alpaca_like(200, seed=2)
    assert a.requests == b.requests and a.requests != c.requests
    prompts = sorted(r.prompt_tokens for r in a.requests)
    assert 20 <= prompts[len(prompts) // 2] <= 100
    assert max(r.output_tokens for r in a.requests) <= 70


def test_shipped_excerpt_loads():
    from importlib.resources import files

    path = str(files("camel_vllm") / "data" / "traces" / "azure_conv_first2000.csv")
    tr = load_trace(path, requests=500, target_rps=1.0)
    assert len(tr) == 500 and tr.duration_s == pytest.approx(499.0)


def test_shipped_code_excerpts_split_the_whole_trace():
    """azure_code_first2000 + azure_code_after2000 = the published code trace (8,819 rows), in order."""
    import csv
    from importlib.resources import files

    folder = files("camel_vllm") / "data" / "traces"
    first, after = (load_trace(str(folder / f"azure_code_{part}.csv")) for part in ("first2000", "after2000"))
    assert (len(first), len(after)) == (2000, 6819)
    stamps = []
    for part in ("first2000", "after2000"):
        with open(str(folder / f"azure_code_{part}.csv"), newline="") as fh:
            stamps.append([row["TIMESTAMP"] for row in csv.DictReader(fh)])
    assert stamps[0][-1] <= stamps[1][0]  # the second file starts where the first ends


def test_skip_drops_the_first_requests():
    tr = alpaca_like(10, rate_per_s=1.0, seed=0)
    rest = transforms.skip(tr, 4)
    assert [r.request_id for r in rest.requests] == [str(i) for i in range(4, 10)]
    assert rest.requests[0].arrival_s == 0.0
    with pytest.raises(ValueError, match="cannot skip 10"):
        transforms.skip(tr, 10)


def test_trace_to_vllm_cli(tmp_path, capsys):
    from camel_vllm.cli import main as cli_main

    src = _write(tmp_path, "a.csv", AZURE)
    out = tmp_path / "o.jsonl"
    assert cli_main(["trace", "to-vllm", src, str(out), "--requests", "2"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and rows[1]["timestamp"] == pytest.approx(1.81941)
    assert "wrote 2 requests" in capsys.readouterr().out
    bad = _write(tmp_path, "b.csv", AZURE + "2023-11-16 18:15:50,1\n")
    assert cli_main(["trace", "to-vllm", bad, str(out)]) == 2
    assert "b.csv:5: expected 3 fields, got 2" in capsys.readouterr().err


@pytest.mark.parametrize("option,value,expect", [
    ("--target-rps", "nan", "--target-rps nan: must be a finite number (req/s)"),
    ("--target-rps", "inf", "--target-rps inf: must be a finite number (req/s)"),
    ("--target-rps", "0", "--target-rps 0: must be > 0 (req/s)"),
    ("--max-context", "-5", "--max-context -5: must be >= 2 tokens"),
    ("--max-context", "0", "--max-context 0: must be >= 2 tokens"),
    ("--max-output", "0", "--max-output 0: must be >= 1 token"),
    ("--requests", "0", "--requests 0: must be >= 1"),
    ("--start-s", "nan", "--start-s nan: must be a finite number (s)"),
    ("--end-s", "-1", "--end-s -1: must be >= 0 (s)"),
])
def test_trace_to_vllm_refuses_bad_options_in_one_line(tmp_path, capsys, option, value, expect):
    from camel_vllm.cli import main as cli_main

    src = _write(tmp_path, "a.csv", AZURE)
    out = tmp_path / "o.jsonl"
    assert cli_main(["trace", "to-vllm", src, str(out), option, value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"camel-vllm trace to-vllm: {expect}")
    assert not out.exists()  # nothing written, in particular no "timestamp": NaN


def test_trace_to_vllm_nan_rate_as_a_user_runs_it(tmp_path):
    import subprocess
    import sys

    src = _write(tmp_path, "a.csv", AZURE)
    proc = subprocess.run([sys.executable, "-m", "camel_vllm", "trace", "to-vllm", src, str(tmp_path / "o.jsonl"),
                           "--target-rps", "nan"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    expect = "camel-vllm trace to-vllm: --target-rps nan: must be a finite number (req/s)"
    assert proc.stderr.strip().splitlines() == [expect]


def test_trace_to_vllm_clips_to_a_model_folders_context_and_says_so(tmp_path, capsys):
    from camel_vllm.cli import main as cli_main

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"max_position_embeddings": 400, "n_positions": 8192}))
    src = _write(tmp_path, "a.csv", AZURE)  # prompt + output: 418, 505, 10
    out = tmp_path / "o.jsonl"
    assert cli_main(["trace", "to-vllm", src, str(out), "--model-dir", str(model)]) == 0
    text = capsys.readouterr().out
    assert f"clipped 2 of 3 requests to a context of 400 tokens (prompt + output; {model}/config.json " \
           "max_position_embeddings)" in text
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert max(r["input_length"] + r["output_length"] for r in rows) == 400
    assert all(len(r["hash_ids"]) == -(-r["input_length"] // VLLM_CHUNK_HASH_SIZE) for r in rows)
    # --max-context smaller than the model's wins; larger does not
    assert cli_main(["trace", "to-vllm", src, str(out), "--model-dir", str(model), "--max-context", "100"]) == 0
    printed = capsys.readouterr().out
    assert "clipped 2 of 3 requests to a context of 100 tokens (prompt + output; --max-context)" in printed
    assert cli_main(["trace", "to-vllm", src, str(out), "--model-dir", str(model), "--max-context", "5000"]) == 0
    assert "context of 400 tokens" in capsys.readouterr().out
    # without any limit it says nothing was clipped, and why
    assert cli_main(["trace", "to-vllm", src, str(out)]) == 0
    assert "no context limit given: requests are not clipped" in capsys.readouterr().out


def test_trace_to_vllm_reads_the_tiny_models_limit_as_vllm_does(tmp_path, capsys):
    """The shipped tiny model: max_position_embeddings 4096, the limit vLLM serves it with."""
    from pathlib import Path

    from camel_vllm.cli.trace_args import context_from_model_dir

    tiny = Path(__file__).resolve().parents[2] / "models" / "tiny"
    if not (tiny / "config.json").exists():
        pytest.fail("models/tiny is missing: run scripts/setup.sh")
    assert context_from_model_dir(str(tiny)) == (4096, f"{tiny}/config.json max_position_embeddings")


@pytest.mark.parametrize("content,expect", [
    (None, "cannot read"),
    ("{not json", "is not JSON"),
    (json.dumps({"hidden_size": 8}), "names no context limit"),
])
def test_trace_to_vllm_bad_model_dir_is_one_line(tmp_path, capsys, content, expect):
    from camel_vllm.cli import main as cli_main

    model = tmp_path / "m"
    model.mkdir()
    if content is not None:
        (model / "config.json").write_text(content)
    src = _write(tmp_path, "a.csv", AZURE)
    assert cli_main(["trace", "to-vllm", src, str(tmp_path / "o.jsonl"), "--model-dir", str(model)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--model-dir {model}: " in err and expect in err
