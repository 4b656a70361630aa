"""The paper's reported numbers (STOP, arXiv 2604.16029), transcribed as printed.

Source: the paper's Tables 2-16 and Eq. 7 (v2, 02 Jun 2026). Values are kept
exactly as printed, typos included; every known typo or inconsistency has a comment here
and an explicit exception in ``tests/test_paper.py``.

Conventions used by every table function:

* accuracies are percentages (``37.92`` means 37.92%); "-" in the paper is ``NaN``;
* token counts are in thousands as printed ("782.3k" -> ``782.3``, "1361k" -> ``1361.0``);
  whether the paper's "k" is 1,000 or 1,024 tokens in Tables 2/13 is not stated;
* token reductions are positive percentages: the printed "(−72.09%)" is ``72.09``.
"""

from __future__ import annotations

import math

import pandas as pd

NaN = math.nan

MODEL_NAMES: tuple[str, ...] = ("DS-Qwen-2.5-1.5B", "DS-Qwen-2.5-7B", "DS-Qwen-3-8B", "GPT-OSS-20B")
DATASETS: tuple[str, ...] = ("AIME24", "AIME25", "BRUMO25", "HMMT25", "GPQA-D")
METHODS: tuple[str, ...] = ("Type I", "Type II", "Type III", "STOP")
# Column prefixes used in the wide tables.
METHOD_KEYS: dict[str, str] = {"Type I": "type1", "Type II": "type2", "Type III": "type3", "STOP": "stop",
                               "Type II-retrain": "type2_retrain"}
BENCHMARK_SIZES: dict[str, int] = {"AIME24": 30, "AIME25": 30, "BRUMO25": 30, "HMMT25": 30, "GPQA-D": 198}

# Paper name -> Hugging Face id.
MODELS: dict[str, str] = {
    "DS-Qwen-2.5-1.5B": "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
    "DS-Qwen-2.5-7B": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
    "DS-Qwen-3-8B": "deepseek-ai/DeepSeek-R1-0528-Qwen3-8B",  # INFERRED: the paper names no checkpoint
    "GPT-OSS-20B": "openai/gpt-oss-20b",
}
INFERRED_MODEL_IDS: frozenset[str] = frozenset({"DS-Qwen-3-8B"})

# App. C.1-C.3: identical for every method.
SAMPLING: dict[str, float | int] = {"temperature": 0.6, "top_p": 0.95, "top_k": 40}

# Section 4.1 / App. C: the standardized pruning protocol.
PROTOCOL: dict = {
    "n_paths": 64,  # N initial paths per query
    "k_keep": 8,  # paths kept and resumed
    "prefix_len": 2048,  # L_prefix, generated tokens at the checkpoint
    "max_new_tokens": {"DS-Qwen-2.5-1.5B": 16384, "DS-Qwen-2.5-7B": 16384,
                       "DS-Qwen-3-8B": 32768, "GPT-OSS-20B": 32768},
    "reasoning_effort": {"GPT-OSS-20B": "medium"},
    "metric": "avg@8|64",  # baseline: avg@64
}

# App. B.2: training-data construction.
DATA_CONSTRUCTION: dict[str, float | int] = {
    "filter_paths": 32, "min_correct": 4, "max_correct": 28,
    "prefix_len": 2048, "mc_rollouts": 32, "mc_temperature": 0.6,
}

_T12_COMMON = {"learning_rate": 2e-5, "target_modules": "all-linear", "optimizer": "AdamW",
               "max_prefix_len": 2048, "epochs": 15, "precision": "bf16", "n_gpus": 8}
# Table 12. ``global_batch`` = per_device * grad_accum * 8 GPUs = 128 (INFERRED, not printed).
TRAINING: dict[str, dict] = {
    name: {"per_device_batch_size": bs, "grad_accum": ga, "lora_rank": r, "lora_alpha": 2 * r,
           **_T12_COMMON, "global_batch": bs * ga * 8}
    for name, bs, ga, r in [("DS-Qwen-2.5-1.5B", 16, 1, 128), ("DS-Qwen-2.5-7B", 8, 2, 256),
                            ("DS-Qwen-3-8B", 8, 2, 256), ("GPT-OSS-20B", 2, 8, 2048)]
}
ALL_LINEAR: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# Eq. 7 as printed (a ~ 1.17e4 etc.); stoplib.scaling uses these values.
SCALING_LAW: dict[str, float] = {"a": 1.17e4, "b": 0.46, "c": 0.40, "d": 4.55}
SCALING_UNIT = 1024  # "all inputs normalized to units of 1,024 tokens"
# Reference task lengths (tokens) behind Tables 14 and 15.
TABLE14_TASK_LEN = 8650  # GPQA / science, "short horizon"
TABLE15_TASK_LEN = 11950  # AIME / math, "long horizon" ("~12k")
# Worked examples in the text: (C as printed in k, L_prefix tokens, L_task tokens) -> printed γ⁻¹.
SCALING_EXAMPLES: list[tuple[int, int, int, float]] = [(158, 2048, 8650, 9.63), (275, 3072, 11950, 3.36)]
# Fig. 6 legend, "Task Progress k = L_P^0.40 / L_T^4.55" (units of 1,024 tokens).
# The AIME values match L_task = 11,950; the GPQA values imply L_task ~ 7,000, not Table 14's 8,650.
FIG6_TASK_PROGRESS: dict[tuple[str, int], float] = {
    ("AIME", 2048): 1.84e-05, ("AIME", 4096): 2.43e-05, ("GPQA", 512): 1.21e-04, ("GPQA", 1024): 1.59e-04,
}

# --- Table 2 ---------------------------------------------------------------------------------
# (model, dataset, avg@64, tokens, then (avg@8|64, tokens, reduction) for Type I, II, III, STOP).
_NA = (NaN, NaN, NaN)
_TABLE2: list[tuple] = [
    ("DS-Qwen-2.5-1.5B", "AIME24", 30.10, 782.3, (26.25, 218.3, 72.09), (32.50, 325.9, 58.34), (32.92, 210.6, 73.08), (37.92, 204.3, 73.88)),
    ("DS-Qwen-2.5-1.5B", "AIME25", 22.76, 784.8, (24.17, 214.7, 72.64), (24.17, 325.0, 58.59), (23.75, 208.7, 73.40), (26.67, 206.6, 73.68)),
    ("DS-Qwen-2.5-1.5B", "BRUMO25", 30.99, 774.6, (29.58, 212.8, 72.53), (31.67, 325.6, 57.96), (31.67, 209.7, 72.93), (33.75, 204.4, 73.61)),
    ("DS-Qwen-2.5-1.5B", "HMMT25", 15.05, 856.4, (15.83, 224.2, 73.82), (15.00, 337.2, 60.63), (17.08, 220.9, 74.21), (17.92, 215.5, 74.84)),
    ("DS-Qwen-2.5-1.5B", "GPQA-D", 33.08, 550.9, (32.32, 187.1, 66.03), _NA, (34.98, 180.4, 67.25), (48.42, 179.4, 67.43)),
    ("DS-Qwen-2.5-7B", "AIME24", 54.69, 666.2, (53.75, 202.7, 69.58), (54.58, 312.5, 53.09), (55.00, 197.4, 70.38), (61.67, 189.0, 71.63)),
    ("DS-Qwen-2.5-7B", "AIME25", 39.67, 703.0, (35.42, 207.4, 70.50), (39.17, 317.6, 54.82), (41.67, 202.6, 71.18), (42.50, 197.5, 71.91)),
    ("DS-Qwen-2.5-7B", "BRUMO25", 50.99, 656.6, (50.00, 199.3, 69.64), (51.25, 312.1, 52.46), (52.92, 194.5, 70.38), (56.67, 190.2, 71.03)),
    ("DS-Qwen-2.5-7B", "HMMT25", 23.91, 808.9, (25.00, 219.5, 72.87), (23.33, 330.8, 59.11), (24.58, 216.1, 73.28), (27.08, 211.6, 73.84)),
    ("DS-Qwen-2.5-7B", "GPQA-D", 45.95, 443.8, (47.09, 173.6, 60.89), _NA, (46.02, 166.7, 62.43), (55.75, 165.9, 62.61)),
    ("DS-Qwen-3-8B", "AIME24", 76.93, 1361.0, (77.50, 290.4, 78.67), (78.75, 398.4, 70.73), (78.33, 284.3, 79.11), (79.17, 279.0, 79.51)),
    ("DS-Qwen-3-8B", "AIME25", 70.68, 1427.0, (69.17, 297.2, 79.18), (72.50, 408.4, 71.39), (70.42, 291.2, 79.60), (72.92, 290.9, 79.62)),
    ("DS-Qwen-3-8B", "BRUMO25", 75.00, 1320.0, (76.25, 284.8, 78.43), (75.83, 394.9, 70.10), (74.58, 280.2, 78.78), (78.75, 277.5, 78.98)),
    ("DS-Qwen-3-8B", "HMMT25", 51.04, 1601.0, (50.00, 322.1, 79.88), (50.83, 427.8, 73.28), (51.25, 314.0, 80.38), (54.58, 311.7, 80.53)),
    ("DS-Qwen-3-8B", "GPQA-D", 56.87, 652.6, (57.07, 201.0, 69.20), _NA, (58.78, 196.6, 69.86), (63.32, 193.5, 70.35)),
    ("GPT-OSS-20B", "AIME24", 75.26, 594.2, (73.33, 196.6, 66.91), (76.25, 299.8, 49.55), (75.00, 187.0, 68.54), (77.50, 184.4, 68.98)),
    ("GPT-OSS-20B", "AIME25", 70.99, 673.4, (69.17, 205.1, 69.54), (69.17, 311.7, 53.71), (70.83, 197.7, 70.64), (75.42, 191.1, 71.62)),
    # BRUMO25: the only row where STOP does not use the fewest tokens (Type III 179.0k is bold).
    ("GPT-OSS-20B", "BRUMO25", 68.02, 575.6, (69.17, 187.6, 67.41), (66.25, 298.8, 48.09), (67.92, 179.0, 68.90), (70.00, 183.6, 68.11)),
    ("GPT-OSS-20B", "HMMT25", 48.13, 910.8, (45.83, 236.3, 74.06), (45.42, 336.9, 63.01), (46.25, 228.0, 74.97), (52.92, 216.1, 76.27)),
    ("GPT-OSS-20B", "GPQA-D", 65.55, 277.2, (66.41, 151.8, 45.24), _NA, (68.43, 145.9, 47.36), (77.46, 143.4, 48.26)),
]

# --- Table 13 (App. D): Type II-retrain = Qwen2.5-Math-PRM-7B fine-tuned on STOP's MC data ------
# (model, dataset, baseline avg@64, tokens, then Type II, Type II-retrain, STOP triples).
# The printed baseline header says "avg@8|64" but the values are Table 2's avg@64.
# Printed 24.16 (1.5B AIME25) and 74.16 (20B AIME24) look truncated, not rounded: 58/240 and
# 178/240 round to 24.17 and 74.17. 8B AIME25 is the only row where STOP (72.92) is not best.
_TABLE13: list[tuple] = [
    ("DS-Qwen-2.5-1.5B", "AIME24", 30.10, 782.3, (32.50, 325.9, 58.34), (37.50, 318.2, 59.33), (37.92, 204.3, 73.88)),
    ("DS-Qwen-2.5-1.5B", "AIME25", 22.76, 784.8, (24.17, 325.0, 58.59), (24.16, 323.2, 58.82), (26.67, 206.6, 73.68)),
    ("DS-Qwen-2.5-1.5B", "BRUMO25", 30.99, 774.6, (31.67, 325.6, 57.96), (32.50, 320.5, 58.62), (33.75, 204.4, 73.61)),
    ("DS-Qwen-2.5-1.5B", "HMMT25", 15.05, 856.4, (15.00, 337.2, 60.63), (16.67, 333.8, 61.03), (17.92, 215.5, 74.84)),
    ("DS-Qwen-2.5-1.5B", "GPQA-D", 33.08, 550.9, _NA, _NA, (48.42, 179.4, 67.43)),
    ("DS-Qwen-2.5-7B", "AIME24", 54.69, 666.2, (54.58, 312.5, 53.09), (59.17, 308.6, 53.68), (61.67, 189.0, 71.63)),
    ("DS-Qwen-2.5-7B", "AIME25", 39.67, 703.0, (39.17, 317.6, 54.82), (37.08, 315.5, 55.13), (42.50, 197.5, 71.91)),
    ("DS-Qwen-2.5-7B", "BRUMO25", 50.99, 656.6, (51.25, 312.1, 52.46), (53.33, 309.1, 52.92), (56.67, 190.2, 71.03)),
    ("DS-Qwen-2.5-7B", "HMMT25", 23.91, 808.9, (23.33, 330.8, 59.11), (24.17, 328.8, 59.35), (27.08, 211.6, 73.84)),
    ("DS-Qwen-2.5-7B", "GPQA-D", 45.95, 443.8, _NA, _NA, (55.75, 165.9, 62.61)),
    ("DS-Qwen-3-8B", "AIME24", 76.93, 1361.0, (78.75, 398.4, 70.73), (77.92, 396.5, 70.87), (79.17, 279.0, 79.51)),
    ("DS-Qwen-3-8B", "AIME25", 70.68, 1427.0, (72.50, 408.4, 71.39), (73.33, 407.5, 71.44), (72.92, 290.9, 79.62)),
    ("DS-Qwen-3-8B", "BRUMO25", 75.00, 1320.0, (75.83, 394.9, 70.10), (75.00, 396.1, 70.01), (78.75, 277.5, 78.98)),
    ("DS-Qwen-3-8B", "HMMT25", 51.04, 1601.0, (50.83, 427.8, 73.28), (52.08, 427.7, 73.28), (54.58, 311.7, 80.53)),
    ("DS-Qwen-3-8B", "GPQA-D", 56.87, 652.6, _NA, _NA, (63.32, 193.5, 70.35)),
    ("GPT-OSS-20B", "AIME24", 75.26, 594.2, (76.25, 299.8, 49.55), (74.16, 302.5, 49.09), (77.50, 184.4, 68.98)),
    ("GPT-OSS-20B", "AIME25", 70.99, 673.4, (69.17, 311.7, 53.71), (69.58, 310.4, 53.91), (75.42, 191.1, 71.62)),
    ("GPT-OSS-20B", "BRUMO25", 68.02, 575.6, (66.25, 298.8, 48.09), (67.50, 297.9, 48.24), (70.00, 183.6, 68.11)),
    ("GPT-OSS-20B", "HMMT25", 48.13, 910.8, (45.42, 336.9, 63.01), (48.75, 333.3, 63.41), (52.92, 216.1, 76.27)),
    ("GPT-OSS-20B", "GPQA-D", 65.55, 277.2, _NA, _NA, (77.46, 143.4, 48.26)),
]


def _wide(rows: list[tuple], methods: tuple[str, ...]) -> pd.DataFrame:
    records = []
    for model, dataset, base_acc, base_tok, *triples in rows:
        rec = {"model": model, "dataset": dataset, "baseline_acc": base_acc, "baseline_tokens_k": base_tok}
        for method, (acc, tok, red) in zip(methods, triples):
            key = METHOD_KEYS[method]
            rec |= {f"{key}_acc": acc, f"{key}_tokens_k": tok, f"{key}_reduction_pct": red}
        records.append(rec)
    return pd.DataFrame.from_records(records)


def _long(rows: list[tuple], methods: tuple[str, ...]) -> pd.DataFrame:
    records = []
    for model, dataset, base_acc, base_tok, *triples in rows:
        records.append({"model": model, "dataset": dataset, "method": "No pruning", "metric": "avg@64",
                        "accuracy": base_acc, "tokens_k": base_tok, "reduction_pct": 0.0})
        for method, (acc, tok, red) in zip(methods, triples):
            records.append({"model": model, "dataset": dataset, "method": method, "metric": "avg@8|64",
                            "accuracy": acc, "tokens_k": tok, "reduction_pct": red})
    return pd.DataFrame.from_records(records)


def main_table(long: bool = False) -> pd.DataFrame:
    """Table 2 (20 rows: 4 models x 5 datasets).

    Wide (default): columns ``model, dataset, baseline_acc, baseline_tokens_k`` then
    ``{type1,type2,type3,stop}_{acc,tokens_k,reduction_pct}``. Type II is NaN on GPQA-D.
    Long (``long=True``): one row per (model, dataset, method) with columns ``model, dataset,
    method, metric, accuracy, tokens_k, reduction_pct``; method "No pruning" is the avg@64 row.
    """
    return _long(_TABLE2, METHODS) if long else _wide(_TABLE2, METHODS)


_T13_METHODS = ("Type II", "Type II-retrain", "STOP")


def retrain_table(long: bool = False) -> pd.DataFrame:
    """Table 13 (App. D), same layouts as :func:`main_table`; columns ``type2``,
    ``type2_retrain`` and ``stop``. NaN on GPQA-D for both Type II columns."""
    return _long(_TABLE13, _T13_METHODS) if long else _wide(_TABLE13, _T13_METHODS)


# --- Ablations (Tables 3-6) -------------------------------------------------------------------
# Tables 3/4: model, N and L_prefix unstated (INFERRED DS-Qwen-2.5-1.5B). Their STOP values
# (36.67 AIME24, 41.73 GPQA) differ from Table 2 (37.92, 48.42): a different, unstated setup.
_TABLE3 = [("AIME24", "Hard labels (K=1)", 35.42, 46.67), ("AIME24", "Soft labels (K=32)", 36.67, 53.33),
           ("GPQA", "Hard labels (K=1)", 40.78, 47.98), ("GPQA", "Soft labels (K=32)", 41.73, 48.48)]
_TABLE4 = [("AIME24", "STOP w/o Adapter", 31.67, 46.67), ("AIME24", "STOP", 36.67, 53.33),
           ("GPQA", "STOP w/o Adapter", 33.96, 35.35), ("GPQA", "STOP", 41.73, 48.48)]
# Table 5: DS-Qwen-2.5-1.5B, AIME24, L_prefix 2048, metric avg@32|256. The 1-token value equals
# Table 2's no-pruning avg@64 (30.10), which looks suspicious.
_TABLE5 = {1: 30.10, 2: 33.54, 3: 35.94, 4: 36.86, 5: 36.77, 6: 37.71, 7: 36.15, 8: 35.00, 9: 33.65}
# Table 6: DS-Qwen-2.5-1.5B, AIME24. Params = 1,154,048 * r (all-linear LoRA on Qwen2.5-1.5B).
_TABLE6 = [(32, 36.9, 32.50), (64, 73.9, 36.25), (128, 147.7, 36.67), (256, 295.4, 35.83)]


def supervision_ablation() -> pd.DataFrame:
    """Table 3: soft (K=32) vs hard (K=1) labels; columns dataset, supervision, avg_8_64, cons_n."""
    return pd.DataFrame(_TABLE3, columns=["dataset", "supervision", "avg_8_64", "cons_n"])


def adapter_ablation() -> pd.DataFrame:
    """Table 4: STOP with and without the Critique Adapter; columns dataset, config, avg_8_64, cons_n."""
    return pd.DataFrame(_TABLE4, columns=["dataset", "config", "avg_8_64", "cons_n"])


def stop_tokens_ablation() -> pd.DataFrame:
    """Table 5: number of [STOP] tokens vs avg@32|256; columns n_tokens, avg_32_256."""
    return pd.DataFrame(list(_TABLE5.items()), columns=["n_tokens", "avg_32_256"])


def lora_rank_ablation() -> pd.DataFrame:
    """Table 6: LoRA rank; columns rank, params_m (millions), avg_8_64."""
    return pd.DataFrame(_TABLE6, columns=["rank", "params_m", "avg_8_64"])


# --- Data (Tables 10/11) ----------------------------------------------------------------------
# (model, math, science, total, construction time in 8xH100 hours).
_TABLE10 = [("DS-Qwen-2.5-1.5B", 14816, 8448, 23264, 43.08), ("DS-Qwen-2.5-7B", 12092, 5666, 17758, 39.46),
            ("DS-Qwen-3-8B", 10848, 4456, 15304, 37.79), ("GPT-OSS-20B", 7872, 2378, 10250, 75.93)]
# Table 11 prints 10,844 for the 8B math count: a typo (10,848 + 4,456 = 15,304).
TABLE11_MATH_8B_PRINTED = 10844


def dataset_sizes() -> pd.DataFrame:
    """Tables 10+11: prefixes per model (math, science, total) and construction 8xH100 hours."""
    return pd.DataFrame(_TABLE10, columns=["model", "math", "science", "total", "hours_8xh100"])


# --- Overhead (Tables 7/16; DS-Qwen-2.5-7B, one H100, batch 16, prefix 2,048) ----------------
# Table 7: method -> (seconds per check, verify cost % as printed in Table 7).
TABLE7: dict[str, tuple[float, float]] = {"Type I": (0.38, 0.93), "Type II": (1.13, 3.37), "STOP": (0.20, 0.59)}
# Table 16 (method, gen s, verify s, total s, tok/s, throughput drop %, explicit verify cost %).
# Known inconsistencies, kept as printed:
# * Type I verify cost 1.74% vs 0.93% in Table 7 (0.38/40.64 = 0.93%);
# * Type I throughput 812.1 implies 40.35 s for the 32,768 tokens (16 x 2,048), not 40.64 s;
# * Type II total 34.68 != 33.53 + 1.13 = 34.66.
_TABLE16 = [("No pruning", 33.20, NaN, 33.20, 986.9, NaN, NaN),
            ("Type I", 40.64, 0.38, 41.02, 812.1, 17.71, 1.74),
            ("Type II", 33.53, 1.13, 34.68, 977.3, 0.97, 3.37),
            ("STOP", 34.13, 0.20, 34.33, 960.1, 2.71, 0.59)]


def overhead_table() -> pd.DataFrame:
    """Table 16 with Table 7's verify cost alongside; NaN where the paper prints "–"."""
    df = pd.DataFrame(_TABLE16, columns=["method", "gen_s", "verify_s", "total_s", "throughput_tok_s",
                                         "throughput_drop_pct", "verify_cost_pct"])
    df["verify_cost_pct_table7"] = [TABLE7.get(m, (NaN, NaN))[1] for m in df["method"]]
    return df


# --- Generalization (Tables 8/9) --------------------------------------------------------------
# Table 8: ZebraLogic mc_mode, 500 random instances (Rows, Cols <= 4), DS-Qwen-2.5-7B.
ZEBRALOGIC: dict[str, float | int | str] = {"model": "DS-Qwen-2.5-7B", "n_instances": 500,
                                            "baseline_avg64": 73.73, "stop_avg8_64": 77.23, "gain": 3.50}
# Table 9: AIMO3 public-leaderboard scores (out of 50), GPT-OSS-120B + Python tool.
AIMO3: dict[str, int] = {"Baseline + Tool": 39, "STOP (24→8)": 42, "STOP (16→8)": 43}


def generalization_table() -> pd.DataFrame:
    """Tables 8 and 9 in one frame: columns benchmark, method, score."""
    rows = [("ZebraLogic", "No pruning (avg@64)", ZEBRALOGIC["baseline_avg64"]),
            ("ZebraLogic", "STOP (avg@8|64)", ZEBRALOGIC["stop_avg8_64"])]
    rows += [("AIMO3", m, float(s)) for m, s in AIMO3.items()]
    return pd.DataFrame(rows, columns=["benchmark", "method", "score"])


# --- Scaling-law recommendation tables (Tables 14/15) -----------------------------------------
# Index: L_prefix in tokens; columns: C as printed in "k" (= units of 1,024 tokens); cells γ⁻¹.
_T14_BUDGETS = [140, 160, 180, 200, 220, 240, 260, 280, 300]
_T14 = {512: [5.23, 5.56, 5.87, 6.16, 6.44, 6.70, 6.95, 7.19, 7.42],
        1024: [6.90, 7.34, 7.75, 8.13, 8.49, 8.84, 9.17, 9.49, 9.80],
        1536: [8.11, 8.63, 9.11, 9.56, 9.99, 10.40, 10.79, 11.16, 11.52],
        2048: [9.10, 9.68, 10.22, 10.73, 11.21, 11.67, 12.10, 12.52, 12.93],
        2560: [9.95, 10.59, 11.17, 11.73, 12.26, 12.76, 13.23, 13.69, 14.13]}
_T15_BUDGETS = [200, 250, 300, 350, 400, 450, 500, 550, 600]
_T15 = {1024: [1.87, 2.07, 2.25, 2.42, 2.57, 2.71, 2.85, 2.98, 3.10],
        2048: [2.47, 2.73, 2.97, 3.19, 3.39, 3.58, 3.76, 3.93, 4.09],
        3072: [2.90, 3.21, 3.49, 3.75, 3.99, 4.21, 4.42, 4.62, 4.81],
        4096: [3.25, 3.60, 3.92, 4.21, 4.48, 4.72, 4.96, 5.18, 5.39],
        5120: [3.56, 3.94, 4.29, 4.60, 4.89, 5.17, 5.42, 5.66, 5.90]}
RECOMMENDATION_TASK_LEN: dict[int, int] = {14: TABLE14_TASK_LEN, 15: TABLE15_TASK_LEN}


def recommendation_table(number: int) -> pd.DataFrame:
    """Table 14 (GPQA, L_task 8,650) or 15 (AIME, L_task 11,950): recommended γ⁻¹.

    Index ``prefix_len`` (tokens); columns are the budgets as printed in "k" (ints: 140 means
    the "140k" column, i.e. 140 x 1,024 tokens in the law's units).
    """
    budgets, cells = {14: (_T14_BUDGETS, _T14), 15: (_T15_BUDGETS, _T15)}[number]
    df = pd.DataFrame.from_dict(cells, orient="index", columns=budgets)
    df.index.name = "prefix_len"
    df.columns.name = "budget_k"
    return df


# --- One-line claims for notebooks ------------------------------------------------------------
def _t2(model: str, dataset: str) -> pd.Series:
    df = main_table()
    return df[(df.model == model) & (df.dataset == dataset)].iloc[0]


def _stop_vs_baseline(model: str, dataset: str) -> str:
    r = _t2(model, dataset)
    return (f"STOP {r.stop_acc:.2f} vs avg@64 {r.baseline_acc:.2f} on {dataset} with {model}, "
            f"tokens {r.baseline_tokens_k:g}k -> {r.stop_tokens_k:g}k (-{r.stop_reduction_pct:.2f}%)")


def claims() -> dict[str, str]:
    """All one-line claims, built from the tables above (so they cannot drift)."""
    t3, t4 = supervision_ablation(), adapter_ablation()
    a = SCALING_LAW
    return {
        "main_1.5b_aime24": _stop_vs_baseline("DS-Qwen-2.5-1.5B", "AIME24"),
        "main_20b_gpqa": _stop_vs_baseline("GPT-OSS-20B", "GPQA-D"),
        "main_best_everywhere": "STOP has the best avg@8|64 in all 20 rows of Table 2 (64 paths pruned to 8 at 2,048 tokens)",
        "retrain_exception": "Only exception (Table 13): DS-Qwen-3-8B AIME25, Type II-retrain 73.33 vs STOP 72.92",
        "soft_labels": (f"Soft labels (K=32) vs hard (K=1): Cons@N {t3.cons_n[1]:.2f} vs {t3.cons_n[0]:.2f}, "
                        f"avg@8|64 {t3.avg_8_64[1]:.2f} vs {t3.avg_8_64[0]:.2f} on AIME24"),
        "adapter": f"Removing the Critique Adapter drops AIME24 avg@8|64 from {t4.avg_8_64[1]:.2f} to {t4.avg_8_64[0]:.2f}",
        "stop_tokens": f"Best number of [STOP] tokens is 6 ({_TABLE5[6]:.2f} avg@32|256, AIME24, 1.5B); plateau 4-6",
        "lora_rank": "Best LoRA rank is 128 (147.7M params, 36.67 avg@8|64 on AIME24, 1.5B)",
        "overhead": "Per check (7B, H100, batch 16, 2,048 prefix): STOP 0.20 s (0.59%), Type I 0.38 s, Type II 1.13 s (3.37%)",
        "zebralogic": f"ZebraLogic (7B): avg@64 {ZEBRALOGIC['baseline_avg64']:.2f} -> STOP {ZEBRALOGIC['stop_avg8_64']:.2f}",
        "aimo3": "AIMO3 (GPT-OSS-120B + tool): baseline 39, STOP(24→8) 42, STOP(16→8) 43",
        "scaling_law": (f"γ⁻¹ = a·C^b·L_prefix^c / L_task^d (units of 1,024 tokens), a={a['a']:.3g}, "
                        f"b={a['b']:.2f}, c={a['c']:.2f}, d={a['d']:.2f}"),
        "scaling_trend": "Optimal retention γ* decreases as the budget C and the prefix length grow; math needs more retention than GPQA",
    }


def claim(key: str) -> str:
    """One claim by key (see :func:`claims` for the keys)."""
    all_claims = claims()
    if key not in all_claims:
        raise KeyError(f"unknown claim {key!r}; known: {sorted(all_claims)}")
    return all_claims[key]
