"""``alignkit.bench.limits`` (FLOP counts on a hand-computed model, CPU info, measuring) and the bench's
length flags and synthetic data of exact token lengths."""

import pytest
from transformers import LlamaConfig

from alignkit.bench import limits
from alignkit.bench.dpo import build_pairs, pair_token_counts, text_of_tokens, token_count
from alignkit.bench.grpo import build_prompts, completion_rows, prompt_token_counts
from alignkit.bench.limits import (
    ModelShape,
    RunFlops,
    backward_flops,
    bound_seconds,
    causal_pairs,
    dpo_flops,
    forward_flops,
    generation_flops,
    parse_cpuinfo,
    shape_of,
)
from alignkit.cli import main
from alignkit.files import write_jsonl
from alignkit.models import load_tokenizer

# A 2-layer model small enough to count by hand: d=8, I=16, 2 query heads and 1 key/value head of 4, V=10.
#   q_dim = 8, kv_dim = 4
#   W (one layer)  = q 8*8 + k 8*4 + v 8*4 + o 8*8 + gate 8*16 + up 8*16 + down 16*8 = 64+32+32+64+128+128+128 = 576
#   head           = 8*10 = 80
#   sum(in+out)    = 16 + 12 + 12 + 16 + 24 + 24 + 24 = 128
TINY = ModelShape(layers=2, hidden=8, intermediate=16, q_heads=2, kv_heads=1, head_dim=4, vocab=10)


def test_shape_from_a_llama_config():
    config = LlamaConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, vocab_size=10)
    assert shape_of(config) == TINY
    assert (TINY.layer_weights, TINY.head_weights, TINY.lora_width, TINY.matmul_weights) == (576, 80, 128, 1232)


def test_causal_pairs():
    assert causal_pairs(5) == 15  # 1+2+3+4+5
    assert causal_pairs(2, past=3) == 9  # (3+1) + (3+2)


def test_forward_and_backward_flops_by_hand():
    # one sequence: 3 prompt + 2 response tokens -> T = 5, A = 15 causal pairs, S = 2 scored
    # forward = 2*T*L*W + 4*A*L*q + 2*S*d*V = 2*5*2*576 + 4*15*2*8 + 2*2*80 = 11520 + 960 + 320
    assert forward_flops(TINY, 5, 15, 2) == 12800
    # + LoRA r=1: 2*T*r*L*sum(in+out) = 2*5*1*2*128 = 2560
    assert forward_flops(TINY, 5, 15, 2, lora_r=1) == 15360
    # full fine-tuning backward = twice the forward: 4*5*2*576 + 8*15*2*8 + 4*2*80 = 23040 + 1920 + 640
    assert backward_flops(TINY, 5, 15, 2) == 25600
    # LoRA r=1 backward: base input grads without layer 0's q,k,v input: 2*5*(2*576 - 8*(8+2*4)) = 10240,
    # attention 8*15*2*8 = 1920, LM head input grad 2*2*80 = 320,
    # LoRA 4*5*1*2*128 - 2*5*1*3*8 = 5120 - 240 = 4880
    assert backward_flops(TINY, 5, 15, 2, lora_r=1) == 10240 + 1920 + 320 + 4880


def test_dpo_flops_plain_and_shared_prompt():
    flops = dpo_flops(TINY, [(3, 2, 2)], lora_r=1)  # two 5-token sequences, as above
    assert (flops.forward, flops.backward, flops.reference) == (2 * 15360, 2 * 17360, 2 * 12800)
    assert flops.generation == 0
    shared = dpo_flops(TINY, [(3, 2, 2)], lora_r=1, share_prompt=True)
    # prompt once: T = 3+2+2 = 7, A = 6 + 2*(2*3 + 3) = 24, S = 4
    # reference = 2*7*2*576 + 4*24*2*8 + 2*4*80 = 16128 + 1536 + 640
    assert shared.reference == 18304


def test_generation_flops_and_decode_bytes_by_hand():
    # prompt of 3 tokens, a group of two rows ending after 3 and 1 tokens, float32
    g = generation_flops(TINY, [(3, [3, 1])], element_size=4)
    # prefill: 2*3*1152 + 4*6*16 + 2*1*80 = 6912 + 384 + 160
    assert g.prefill == 7456
    # 2 decode steps, only the 3-token row: after 3 cached: 2*1152 + 4*4*16 + 160 = 2720; after 4: 2304+320+160
    assert (g.decode_steps, g.decode) == (2, 2720 + 2784)
    # bytes: weights 1232 + K/V 2*L*kv*c = 2*2*4*c, times 4 bytes: (1232+48)*4 + (1232+64)*4
    assert g.decode_bytes == 5120 + 5184


def test_bound_seconds():
    flops = RunFlops(forward=2e9, backward=4e9, reference=1e9, prefill=1e9, decode=1e9, decode_bytes=4e9)
    b = bound_seconds(flops, train_gflops=1.0, gen_gflops=2.0, read_gbs=1.0)
    assert (b["forward_s"], b["backward_s"], b["reference_s"]) == (2.0, 4.0, 1.0)
    assert (b["prefill_s"], b["decode_compute_s"], b["decode_memory_s"]) == (0.5, 0.5, 4.0)
    assert b["generation_s"] == 4.5 and b["total_s"] == 11.5  # decode: the larger of compute and memory


def test_completion_rows_from_logged_figures():
    # 4 completions, mean 5.5 tokens (22 in all), a quarter without EOS at max 8: one 8, 14 over three rows
    assert completion_rows(5.5, 0.25, 4, 8) == [8, 5, 5, 4]
    assert completion_rows(8.0, 1.0, 2, 8) == [8, 8]


CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2 avx fma avx2 bmi2
processor\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2 avx fma avx2 bmi2
"""


def test_cpu_info_from_fake_proc_cpuinfo():
    info = parse_cpuinfo(CPUINFO)
    assert (info.model, info.cpus, info.flags) == ("AMD EPYC 7B13", 2, ("avx2", "fma"))
    intel = parse_cpuinfo("processor : 0\nmodel name : Xeon\nflags : avx2 avx512f avx512_bf16 amx_tile amx_bf16\n")
    assert intel.flags == ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
    arm = parse_cpuinfo("processor : 0\nFeatures : fp asimd sve\nCPU part : 0xd0c\n")
    assert (arm.model, arm.flags) == ("0xd0c", ("asimd", "sve"))
    assert "avx2 fma" in info.describe()


def test_cpu_info_without_the_file(tmp_path):
    info = limits.read_cpu_info(tmp_path / "missing")
    assert info.cpus == 1 and info.flags == () and info.model


def test_measuring_returns_positive_figures():
    t = limits.measure_matmul(TINY, tokens=16, scored=4, seq_len=8, rows=2, min_seconds=0.0)
    assert t.gflops > 0 and t.dtype == "float32" and set(t.per_shape) >= {"8x8", "head 8x10", "attn scores"}
    bw = limits.measure_bandwidth(mib=4, min_seconds=0.0)
    assert bw.read_gbs > 0 and bw.copy_gbs > 0


# ----------------------------------------------------------------------------- synthetic data


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("tiny-random")


@pytest.mark.parametrize("n", [1, 2, 3, 17, 64])
def test_text_of_tokens_is_exact(tok, n):
    import random

    assert token_count(tok, text_of_tokens(tok, n, random.Random(n), opening="Explain tea to a beginner.")) == n


def test_pairs_have_the_requested_lengths(tok, tmp_path):
    rows = build_pairs(6, prompt_tokens=40, response_tokens=64, tokenizer=tok)
    for r in rows:
        assert token_count(tok, r["prompt"][0]["content"]) == 40
        assert token_count(tok, r["chosen"][0]["content"]) == 64
        assert token_count(tok, r["rejected"][0]["content"]) == 64
    assert rows == build_pairs(6, prompt_tokens=40, response_tokens=64, tokenizer=tok)  # deterministic
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    counts = pair_token_counts(str(tmp_path / "pairs.jsonl"), tok, 10**6)
    assert len(set(counts)) == 1  # the chat template adds the same tokens to every pair
    p, c, r = counts[0]
    assert c == r and c > 64 and p > 40


def test_prompts_have_the_requested_length(tok, tmp_path):
    rows = build_prompts(5, prompt_tokens=30, tokenizer=tok)
    assert all(token_count(tok, r["prompt"][0]["content"]) == 30 for r in rows)
    write_jsonl(tmp_path / "prompts.jsonl", rows)
    assert len(set(prompt_token_counts(str(tmp_path / "prompts.jsonl"), tok))) == 1


# ----------------------------------------------------------------------------- flags


@pytest.mark.parametrize("argv", [
    ["dpo", "--response-tokens", "0"],
    ["dpo", "--prompt-tokens", "-3"],
    ["grpo", "--response-tokens", "0"],
    ["grpo", "--max-new-tokens", "0"],
])
def test_bad_lengths_are_one_line_errors(argv, tmp_path, capsys):
    assert main(["bench", *argv, "--model", "tiny-random", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "must be at least 1" in err


def test_answers_longer_than_max_length_are_an_error(tmp_path, capsys):
    assert main(["bench", "dpo", "--model", "tiny-random", "--response-tokens", "300", "--max-length", "256",
                 "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--max-length 256" in err


def test_length_flags_parse(monkeypatch):
    seen = []
    monkeypatch.setattr("alignkit.bench.dpo.run", lambda args: seen.append(args) or 0)
    monkeypatch.setattr("alignkit.bench.grpo.run", lambda args: seen.append(args) or 0)
    assert main(["bench", "dpo", "--response-tokens", "100", "--prompt-tokens", "40", "--sweep"]) == 0
    assert main(["bench", "grpo", "--response-tokens", "64", "--prompt-tokens", "20"]) == 0
    d, g = seen
    assert (d.response_tokens, d.prompt_tokens, d.sweep, d.max_length) == (100, 40, True, 256)
    assert (g.max_new_tokens, g.prompt_tokens, g.sweep) == (64, 20, False)  # --response-tokens = --max-new-tokens


def test_defaults_without_flags(monkeypatch):
    seen = []
    monkeypatch.setattr("alignkit.bench.dpo.run", lambda args: seen.append(args) or 0)
    monkeypatch.setattr("alignkit.bench.grpo.run", lambda args: seen.append(args) or 0)
    assert main(["bench", "dpo"]) == 0 and main(["bench", "grpo"]) == 0
    d, g = seen
    assert (d.response_tokens, d.prompt_tokens, d.sweep, d.steps, d.batch_size, d.max_length) == (None, None, False,
                                                                                                  12, 4, 256)
    assert (g.max_new_tokens, g.prompt_tokens, g.sweep, g.steps) == (32, None, False, 8)


def test_best_throughput_keeps_each_shapes_fastest_rate():
    work = {"a": 6e9, "b": 2e9}
    slow = limits.Throughput("float32", 16, limits.effective_gflops({"a": 100.0, "b": 200.0}, work),
                             {"a": 100.0, "b": 200.0}, work, [0.0])
    fast = limits.Throughput("float32", 16, 0.0, {"a": 150.0, "b": 50.0}, work, [1.0])
    # by hand: a at 150, b at 200 -> 8e9 FLOP in 6e9/150e9 + 2e9/200e9 = 0.04 + 0.01 = 0.05 s -> 160 GFLOP/s
    best = limits.best_throughput([slow, fast])
    assert best.per_shape == {"a": 150.0, "b": 200.0}
    assert best.gflops == pytest.approx(160.0)
    assert best.samples == [0.0, 1.0]
    # slow alone: 6e9/100e9 + 2e9/200e9 = 0.07 s -> 114.29 GFLOP/s
    assert slow.gflops == pytest.approx(8e9 / 0.07 / 1e9)
