"""Internal consistency of the transcribed paper numbers (stoplib.paper).

Every known oddity of the paper is listed explicitly here, so a transcription slip shows up
as a new failure rather than hiding among tolerated exceptions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from stoplib import paper

T2_KEYS = ("type1", "type2", "type3", "stop")
T13_KEYS = ("type2", "type2_retrain", "stop")


def _half_unit_tokens(tokens_k: float) -> float:
    """Half of the last printed digit: "1361k" -> 0.5, "782.3k" -> 0.05."""
    return 0.5 if tokens_k >= 1000 else 0.05


def _reduction_rows(df, keys):
    for _, row in df.iterrows():
        for key in keys:
            tok = row[f"{key}_tokens_k"]
            if not math.isnan(tok):
                yield row, key, tok, row[f"{key}_reduction_pct"]


def test_table2_shape():
    df = paper.main_table()
    assert len(df) == 20
    assert set(df.model) == set(paper.MODEL_NAMES) and set(df.dataset) == set(paper.DATASETS)
    assert not df.duplicated(["model", "dataset"]).any()
    # Type II (a math PRM) is "-" exactly on GPQA-D.
    assert (df.type2_acc.isna() == (df.dataset == "GPQA-D")).all()
    assert df.drop(columns=[c for c in df.columns if c.startswith("type2")]).notna().all().all()


def test_long_form_matches_wide():
    wide, long = paper.main_table(), paper.main_table(long=True)
    assert len(long) == 20 * 5
    r = long[(long.model == "DS-Qwen-2.5-1.5B") & (long.dataset == "AIME24") & (long.method == "STOP")].iloc[0]
    assert (r.accuracy, r.tokens_k, r.reduction_pct, r.metric) == (37.92, 204.3, 73.88, "avg@8|64")
    assert long[long.method == "No pruning"].accuracy.tolist() == wide.baseline_acc.tolist()


@pytest.mark.parametrize("table", ["main", "retrain"])
def test_reductions_match_token_columns(table):
    """Printed % reduction = (base − pruned)/base: within ±0.02 points, and exactly reachable
    (to the printed 2 decimals) from some values inside the token columns' rounding intervals."""
    df, keys = (paper.main_table(), T2_KEYS) if table == "main" else (paper.retrain_table(), T13_KEYS)
    loose, strict = [], []
    for row, key, tok, red in _reduction_rows(df, keys):
        base = row.baseline_tokens_k
        if abs(100 * (base - tok) / base - red) > 0.02:
            loose.append((row.model, row.dataset, key))
        hb, hp = _half_unit_tokens(base), 0.05
        lo = 100 * (1 - (tok + hp) / (base - hb))
        hi = 100 * (1 - (tok - hp) / (base + hb))
        if not (lo - 0.005 <= red <= hi + 0.005):
            strict.append((row.model, row.dataset, key))
    # No row fails; the largest gap is 0.018 (8B BRUMO25 Type II-retrain, 1320k printed to 1k).
    assert loose == [] and strict == []


def test_stop_best_accuracy_in_every_table2_row():
    df = paper.main_table()
    others = df[[f"{k}_acc" for k in ("type1", "type2", "type3")] + ["baseline_acc"]].max(axis=1)
    assert (df.stop_acc > others).all()


def test_stop_fewest_tokens_except_one_row():
    df = paper.main_table()
    others = df[[f"{k}_tokens_k" for k in ("type1", "type2", "type3")]].min(axis=1)
    losers = df[df.stop_tokens_k >= others][["model", "dataset"]].values.tolist()
    assert losers == [["GPT-OSS-20B", "BRUMO25"]]  # Type III 179.0k < STOP 183.6k, bold in the paper


def test_type2_token_excess():
    """Type II spends 115-124k more tokens than STOP in every row (unexplained in the paper)."""
    df = paper.main_table().dropna(subset=["type2_tokens_k"])
    excess = df.type2_tokens_k - df.stop_tokens_k
    assert excess.between(115.0, 124.0).all()


def test_table13_repeats_table2():
    t2, t13 = paper.main_table(), paper.retrain_table()
    assert len(t13) == 20
    for col in ["model", "dataset", "baseline_acc", "baseline_tokens_k"] + [
            f"{k}_{m}" for k in ("type2", "stop") for m in ("acc", "tokens_k", "reduction_pct")]:
        assert t13[col].equals(t2[col]), col


def test_table13_stop_best_except_8b_aime25():
    df = paper.retrain_table()
    others = df[["baseline_acc", "type2_acc", "type2_retrain_acc"]].max(axis=1)
    losers = df[df.stop_acc <= others][["model", "dataset"]].values.tolist()
    assert losers == [["DS-Qwen-3-8B", "AIME25"]]
    row = df[(df.model == "DS-Qwen-3-8B") & (df.dataset == "AIME25")].iloc[0]
    assert (row.type2_retrain_acc, row.stop_acc) == (73.33, 72.92)


def _is_count_fraction(value: float, denom: int) -> bool:
    """Whether ``value`` (a percentage to 2 decimals) is 100·m/denom for an integer m."""
    m = round(value * denom / 100)
    return any(abs(100 * mm / denom - value) <= 0.005 + 1e-9 for mm in (m - 1, m, m + 1))


# Accuracy cells that are not 100·m/(|Q|·paths) for any integer m, as printed:
KNOWN_GRANULARITY_ODDITIES = {
    ("main", "DS-Qwen-2.5-1.5B", "GPQA-D", "type3", 34.98),
    ("main", "DS-Qwen-2.5-7B", "AIME25", "baseline", 39.67),  # 30 x 64 gives 39.64 or 39.69
    ("main", "DS-Qwen-2.5-7B", "GPQA-D", "type1", 47.09),
    ("main", "DS-Qwen-2.5-7B", "GPQA-D", "stop", 55.75),
    ("retrain", "DS-Qwen-2.5-1.5B", "AIME25", "type2_retrain", 24.16),  # 58/240 = 24.1667: truncated
    ("retrain", "DS-Qwen-2.5-7B", "AIME25", "baseline", 39.67),
    ("retrain", "DS-Qwen-2.5-7B", "GPQA-D", "stop", 55.75),
    ("retrain", "GPT-OSS-20B", "AIME24", "type2_retrain", 74.16),  # 178/240 = 74.1667: truncated
}


def test_accuracies_are_count_fractions():
    """avg@64 = m/(64|Q|), avg@8|64 = m/(8|Q|): true for all but the listed cells."""
    found = set()
    for table, df, keys in [("main", paper.main_table(), T2_KEYS), ("retrain", paper.retrain_table(), T13_KEYS)]:
        for _, row in df.iterrows():
            n_q = paper.BENCHMARK_SIZES[row.dataset]
            if not _is_count_fraction(row.baseline_acc, 64 * n_q):
                found.add((table, row.model, row.dataset, "baseline", row.baseline_acc))
            for key in keys:
                v = row[f"{key}_acc"]
                if not math.isnan(v) and not _is_count_fraction(v, 8 * n_q):
                    found.add((table, row.model, row.dataset, key, v))
    assert found == KNOWN_GRANULARITY_ODDITIES


def test_ablations():
    t3, t4 = paper.supervision_ablation(), paper.adapter_ablation()
    for df in (t3, t4):  # the "ours" rows are identical in Tables 3 and 4 and beat the other row
        assert len(df) == 4
        assert (df.avg_8_64.values[1::2] > df.avg_8_64.values[0::2]).all()
        assert (df.cons_n.values[1::2] > df.cons_n.values[0::2]).all()
    assert t3.iloc[[1, 3], 2:].values.tolist() == t4.iloc[[1, 3], 2:].values.tolist()
    assert _is_count_fraction(t3.cons_n[1], 30) and _is_count_fraction(t3.cons_n[3], 198)
    t5 = paper.stop_tokens_ablation()
    assert t5.n_tokens.tolist() == list(range(1, 10))
    assert t5.loc[t5.avg_32_256.idxmax(), "n_tokens"] == 6
    assert t5.avg_32_256[0] == paper.main_table().baseline_acc[0] == 30.10  # suspicious, as printed
    t6 = paper.lora_rank_ablation()
    # All-linear LoRA on Qwen2.5-1.5B: 1,154,048 parameters per unit of rank (see below).
    assert np.allclose(t6.params_m, np.round(1_154_048 * t6["rank"] / 1e6, 1))
    assert t6.loc[t6.avg_8_64.idxmax(), "rank"] == 128


def test_dataset_sizes():
    df = paper.dataset_sizes()
    assert (df.math + df.science == df.total).all()
    assert df.total.tolist() == [23264, 17758, 15304, 10250]
    eight_b = df[df.model == "DS-Qwen-3-8B"].iloc[0]
    assert paper.TABLE11_MATH_8B_PRINTED + eight_b.science != eight_b.total  # the Table 11 typo


def test_overhead_tables():
    df = paper.overhead_table().set_index("method")
    tokens = 16 * 2048  # batch 16, prefix 2,048
    # Throughput = 32,768 tokens / generation time, except Type I (812.1 implies 40.35 s).
    implied = (tokens / df.throughput_tok_s - df.gen_s).abs()
    assert implied[implied > 0.01].index.tolist() == ["Type I"]
    # Throughput drop vs the baseline, within the rounding of the throughputs.
    base = df.throughput_tok_s["No pruning"]
    drop = 100 * (base - df.throughput_tok_s) / base
    assert ((drop - df.throughput_drop_pct).abs().dropna() < 0.01).all()
    # Total = gen + verify, except Type II (34.68 printed, 34.66 summed).
    gap = (df.gen_s + df.verify_s.fillna(0) - df.total_s).abs()
    assert gap[gap > 0.005].index.tolist() == ["Type II"]
    # Verify cost = verify / gen: Table 7 always; Table 16 except Type I (1.74 vs 0.93).
    cost = 100 * df.verify_s / df.gen_s
    assert ((cost - df.verify_cost_pct_table7).abs().dropna() < 0.006).all()
    bad16 = (cost - df.verify_cost_pct).abs()
    assert bad16[bad16 > 0.006].index.tolist() == ["Type I"]


def test_constants():
    assert paper.SAMPLING == {"temperature": 0.6, "top_p": 0.95, "top_k": 40}
    assert (paper.PROTOCOL["n_paths"], paper.PROTOCOL["k_keep"], paper.PROTOCOL["prefix_len"]) == (64, 8, 2048)
    assert set(paper.PROTOCOL["max_new_tokens"]) == set(paper.MODEL_NAMES)
    # Table 12, typed again: (per-device batch, gradient accumulation, LoRA rank, alpha) per model.
    table12 = {"DS-Qwen-2.5-1.5B": (16, 1, 128, 256), "DS-Qwen-2.5-7B": (8, 2, 256, 512),
               "DS-Qwen-3-8B": (8, 2, 256, 512), "GPT-OSS-20B": (2, 8, 2048, 4096)}
    assert {name: (t["per_device_batch_size"], t["grad_accum"], t["lora_rank"], t["lora_alpha"])
            for name, t in paper.TRAINING.items()} == table12
    assert {t["global_batch"] for t in paper.TRAINING.values()} == {128}  # 8 GPUs x batch x accumulation
    assert set(paper.MODELS) == set(paper.MODEL_NAMES) == set(paper.TRAINING)
    assert paper.MODELS["DS-Qwen-2.5-1.5B"] == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    assert paper.INFERRED_MODEL_IDS == {"DS-Qwen-3-8B"}


def test_generalization():
    assert round(paper.ZEBRALOGIC["stop_avg8_64"] - paper.ZEBRALOGIC["baseline_avg64"], 2) == paper.ZEBRALOGIC["gain"]
    assert len(paper.generalization_table()) == 5


def test_claims():
    assert paper.claim("main_1.5b_aime24") == (
        "STOP 37.92 vs avg@64 30.10 on AIME24 with DS-Qwen-2.5-1.5B, tokens 782.3k -> 204.3k (-73.88%)")
    assert "77.46" in paper.claim("main_20b_gpqa") and "65.55" in paper.claim("main_20b_gpqa")
    with pytest.raises(KeyError):
        paper.claim("nope")


def test_written_claims_agree_with_the_tables():
    """Claims whose numbers are written out in paper.claims() say what the tables hold."""
    t13 = paper.retrain_table()
    row = t13[(t13.model == "DS-Qwen-3-8B") & (t13.dataset == "AIME25")].iloc[0]
    assert f"Type II-retrain {row.type2_retrain_acc:.2f} vs STOP {row.stop_acc:.2f}" in paper.claim("retrain_exception")
    t6 = paper.lora_rank_ablation()
    best = t6.loc[t6.avg_8_64.idxmax()]
    assert f"rank is {int(best['rank'])} ({best.params_m}M params, {best.avg_8_64:.2f} avg@8|64" in paper.claim("lora_rank")
    t5 = paper.stop_tokens_ablation()
    assert f"tokens is {int(t5.loc[t5.avg_32_256.idxmax(), 'n_tokens'])} " in paper.claim("stop_tokens")
    overhead = paper.claim("overhead")
    for method, (seconds, _) in paper.TABLE7.items():
        assert f"{method} {seconds:.2f} s" in overhead, method
    assert f"({paper.TABLE7['STOP'][1]:.2f}%)" in overhead and f"({paper.TABLE7['Type II'][1]:.2f}%)" in overhead
    assert [int(s) for s in paper.claim("aimo3").replace(",", " ").split() if s.isdigit()] == list(paper.AIMO3.values())
    p = paper.PROTOCOL
    assert f"all {len(paper.main_table())} rows" in paper.claim("main_best_everywhere")
    assert f"({p['n_paths']} paths pruned to {p['k_keep']} at {p['prefix_len']:,} tokens)" in \
        paper.claim("main_best_everywhere")


def test_lora_parameters_per_rank_follow_from_qwen2_5_1_5b():
    """Table 6's 1,154,048 parameters per unit of rank: A (in x r) + B (r x out) for each of the seven
    linear layers, over Qwen2.5-1.5B's 28 layers (hidden 1,536, MLP 8,960, 2 KV heads of 128)."""
    hidden, mlp, kv, layers = 1536, 8960, 2 * 128, 28
    shapes = [(hidden, hidden), (hidden, kv), (hidden, kv), (hidden, hidden),  # q, k, v, o
              (hidden, mlp), (hidden, mlp), (mlp, hidden)]  # gate, up, down
    assert layers * sum(a + b for a, b in shapes) == 1_154_048
    assert paper.ALL_LINEAR == ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def test_cells_typed_a_second_time():
    """A few cells of each table typed again, so that an accidental edit of stoplib/paper.py fails."""
    t2 = paper.main_table().set_index(["model", "dataset"])
    assert tuple(t2.loc[("DS-Qwen-2.5-7B", "GPQA-D"), ["stop_acc", "stop_tokens_k", "stop_reduction_pct"]]) == \
        (55.75, 165.9, 62.61)
    assert tuple(t2.loc[("DS-Qwen-3-8B", "HMMT25"), ["baseline_acc", "baseline_tokens_k"]]) == (51.04, 1601.0)
    assert tuple(t2.loc[("GPT-OSS-20B", "BRUMO25"), ["type3_acc", "type3_tokens_k", "type3_reduction_pct"]]) == \
        (67.92, 179.0, 68.90)
    assert tuple(t2.loc[("DS-Qwen-2.5-1.5B", "AIME25"), ["type1_acc", "type2_acc", "type2_tokens_k"]]) == \
        (24.17, 24.17, 325.0)
    t13 = paper.retrain_table().set_index(["model", "dataset"])
    assert tuple(t13.loc[("DS-Qwen-2.5-1.5B", "AIME24"), ["type2_retrain_acc", "type2_retrain_tokens_k",
                                                          "type2_retrain_reduction_pct"]]) == (37.50, 318.2, 59.33)
    assert t13.loc[("GPT-OSS-20B", "HMMT25"), "type2_retrain_acc"] == 48.75
    assert paper.recommendation_table(14).loc[2048, 200] == 10.73
    assert paper.recommendation_table(15).loc[4096, 600] == 5.39
    assert paper.recommendation_table(15).loc[1024, 200] == 1.87
    assert dict(zip(paper.stop_tokens_ablation().n_tokens, paper.stop_tokens_ablation().avg_32_256))[6] == 37.71
    assert paper.lora_rank_ablation().values.tolist() == [[32, 36.9, 32.50], [64, 73.9, 36.25], [128, 147.7, 36.67],
                                                          [256, 295.4, 35.83]]
    assert paper.supervision_ablation().values.tolist()[1] == ["AIME24", "Soft labels (K=32)", 36.67, 53.33]
    sizes = paper.dataset_sizes().set_index("model")
    assert tuple(sizes.loc["GPT-OSS-20B"]) == (7872, 2378, 10250, 75.93)
    overhead = paper.overhead_table().set_index("method")
    assert tuple(overhead.loc["STOP", ["gen_s", "verify_s", "total_s", "throughput_tok_s"]]) == (34.13, 0.20, 34.33, 960.1)
    assert paper.SCALING_LAW == {"a": 1.17e4, "b": 0.46, "c": 0.40, "d": 4.55}
    assert (paper.ZEBRALOGIC["baseline_avg64"], paper.ZEBRALOGIC["stop_avg8_64"]) == (73.73, 77.23)
