"""The papers' published numbers that rwku_nb shows beside its own (../shared/PROTOCOL.md): RWKU's Table 1
(LLaMA3-8B-Instruct), Table 2 (Phi-3-mini), Table 6's Before rows, Table 3's data counts, and RMU's numbers
reported on RWKU elsewhere."""
from __future__ import annotations

import pandas as pd

# The paper's Table 1 layout (group, column): every row below lists its values in this order.
PAPER_COLUMNS = (("Forget", "FB"), ("Forget", "QA"), ("Forget", "AA"), ("Forget", "All"), ("Neighbor", "FB"),
                 ("Neighbor", "QA"), ("Neighbor", "All"), ("MIA", "FM"), ("MIA", "RM"), ("Utility", "Gen"),
                 ("Utility", "Rea"), ("Utility", "Tru"), ("Utility", "Fac"), ("Utility", "Flu"))

# Paper Table 1, LLaMA3-8B-Instruct, mean over 100 targets (Jin et al. 2024; ../shared/PROTOCOL.md).
# Forget FB QA AA All | Neighbor FB QA All | MIA FM RM (NLL x 100) | Utility Gen (MMLU) Rea (BBH)
# Tru (TruthfulQA MC1) Fac (TriviaQA F1) Flu (AlpacaEval n-gram entropy x 100).
PAPER_TABLE1_LLAMA3 = {
    "Before": [85.9, 76.4, 77.7, 79.6, 95.6, 85.3, 90.7, 226.7, 230.4, 65.7, 42.3, 36.8, 53.5, 705.8],
    "ICU": [26.2, 1.9, 10.3, 12.8, 65.0, 46.5, 55.7, 247.1, 258.4, 63.6, 39.3, 36.4, 48.2, 705.0],
    "RepE": [29.8, 33.6, 37.8, 34.8, 46.2, 38.8, 42.6, 292.0, 290.0, 64.8, 26.3, 37.6, 17.9, 703.7],
    "GA* Full": [40.7, 36.5, 43.7, 41.4, 68.6, 68.6, 68.1, 1640.9, 766.2, 65.5, 39.7, 37.8, 41.9, 692.4],
    "GA* LoRA": [70.3, 65.6, 67.8, 68.2, 80.6, 75.5, 77.5, 879.5, 665.1, 64.0, 37.8, 37.3, 43.8, 711.3],
    "GA Full": [39.1, 31.6, 46.7, 41.9, 84.6, 73.6, 79.0, 258.6, 231.0, 64.9, 42.0, 35.9, 52.5, 705.1],
    "GA LoRA": [67.0, 53.2, 61.8, 61.3, 90.1, 80.4, 85.3, 224.1, 221.6, 64.7, 41.5, 36.6, 52.8, 697.3],
    "DPO Full": [46.3, 38.5, 41.6, 41.9, 59.2, 51.3, 55.2, 243.6, 240.8, 64.1, 42.0, 31.5, 25.8, 725.9],
    "DPO LoRA": [75.3, 65.4, 68.6, 69.5, 90.0, 81.5, 85.6, 228.0, 231.2, 65.6, 42.0, 34.5, 55.5, 702.7],
    "NPO Full": [33.4, 21.0, 24.8, 26.2, 76.0, 69.9, 72.6, 278.9, 263.2, 64.8, 41.5, 34.9, 41.2, 712.2],
    "NPO LoRA": [75.1, 64.3, 69.0, 69.7, 91.3, 82.2, 86.7, 225.1, 227.0, 64.9, 41.7, 36.0, 54.0, 707.3],
    "RT Full": [72.7, 13.4, 22.8, 33.1, 86.9, 45.6, 67.4, 222.7, 226.6, 65.4, 41.4, 34.9, 59.3, 588.1],
    "RT LoRA": [85.4, 49.6, 53.2, 60.5, 87.3, 74.1, 81.9, 226.0, 223.9, 64.5, 41.2, 33.6, 58.2, 667.7],
}


# Paper Table 2, Phi-3-mini-4k-instruct (the paper has no RepE, NPO LoRA or RT LoRA rows), and Table 6's
# Before rows of two more models (../shared/PROTOCOL.md); columns as Table 1. Table 6 prints LLaMA3's Before
# Tru as 37.5 where Table 1 has 36.8; the Table 1 value is used for LLaMA3.
PAPER_TABLE2_PHI3 = {
    "Before": [47.1, 47.4, 55.8, 51.8, 56.2, 61.4, 58.3, 205.6, 207.5, 64.4, 39.5, 46.4, 15.1, 705.8],
    "ICU": [45.2, 34.6, 32.2, 36.0, 52.9, 56.1, 54.0, 237.0, 252.7, 63.9, 41.3, 46.2, 13.5, 712.7],
    "GA* Full": [37.1, 37.9, 46.4, 42.2, 51.8, 59.2, 54.6, 642.0, 376.9, 64.4, 38.5, 45.9, 15.1, 703.0],
    "GA* LoRA": [46.2, 47.5, 55.8, 51.6, 55.1, 61.2, 57.4, 231.8, 226.3, 64.4, 39.3, 46.0, 15.1, 702.1],
    "GA Full": [17.8, 14.3, 26.3, 21.6, 49.7, 51.7, 50.2, 294.8, 223.5, 64.3, 38.7, 46.6, 15.4, 697.0],
    "GA LoRA": [40.5, 37.8, 49.5, 44.8, 55.2, 60.1, 56.7, 207.0, 207.3, 64.2, 39.7, 46.4, 15.0, 698.9],
    "DPO Full": [25.0, 19.1, 29.9, 26.6, 41.4, 39.6, 40.1, 212.8, 201.1, 63.0, 41.6, 45.1, 15.1, 704.3],
    "DPO LoRA": [44.1, 45.6, 54.9, 50.3, 56.2, 60.5, 57.7, 213.6, 213.5, 64.3, 40.2, 46.5, 15.3, 700.8],
    "NPO Full": [22.5, 16.9, 27.3, 23.8, 50.5, 53.6, 51.3, 216.6, 207.2, 64.2, 39.8, 46.3, 15.3, 691.5],
    "RT Full": [47.6, 46.6, 55.4, 51.7, 57.2, 61.5, 58.8, 203.2, 205.5, 64.1, 40.7, 47.5, 15.4, 693.7],
}
PAPER_TABLE6_MISTRAL = {"Before": [64.0, 52.1, 57.8, 58.2, 74.0, 61.9, 68.4, 190.8, 195.3, 57.1, 31.7, 54.4, 20.0, 698.9]}
PAPER_TABLE6_LLAMA2 = {"Before": [51.8, 46.9, 57.5, 53.8, 63.7, 64.6, 64.1, 202.7, 207.2, 42.8, 26.9, 30.4, 41.5, 704.2]}
# The paper's rows per model it evaluated: (hub id, label, rows).
PAPER_MODELS = (
    ("meta-llama/Meta-Llama-3-8B-Instruct", "Paper, LLaMA3-8B-Instruct", PAPER_TABLE1_LLAMA3),
    ("microsoft/Phi-3-mini-4k-instruct", "Paper, Phi-3-mini-4k-instruct (Table 2)", PAPER_TABLE2_PHI3),
    ("mistralai/Mistral-7B-Instruct-v0.2", "Paper, Mistral-7B-Instruct-v0.2 (Table 6)", PAPER_TABLE6_MISTRAL),
    ("meta-llama/Llama-2-7b-chat-hf", "Paper, LLaMA2-7B-Chat (Table 6)", PAPER_TABLE6_LLAMA2),
)


# Reported on RWKU with LLaMA3-8B-Instruct outside the paper (variant not stated): RMU, forget All 24.1 and
# neighbor All 73.8 (HongbangYuan/RobustUnlearning, README). Shown beside the paper's rows where RMU runs.
REPORTED_LLAMA3 = {"RMU (RobustUnlearning)": {("Forget", "All"): 24.1, ("Neighbor", "All"): 73.8}}


# Paper Table 3 (all 200 targets; ../shared/PROTOCOL.md): items and average length per set. The paper does not
# say in what unit lengths are counted; `dataset_statistics` counts whitespace words.
PAPER_TABLE3 = {"Forget FB": (3268, 12.7), "Forget QA": (2879, 11.1), "Forget AA": (6984, 19.5),
                "Neighbor FB": (5846, 14.6), "Neighbor QA": (5533, 10.5), "MIA FM": (6198, 139.9),
                "MIA RM": (7487, 131.9)}

# The utility sets per target as the paper's datasheet gives them (../shared/PROTOCOL.md): 171 MMLU, 81 BBH, 50
# TruthfulQA, 100 TriviaQA, 50 AlpacaEval items. The official evaluation (train/*/workflow.py) scores every row
# of the released files instead (500 each); rwku_nb follows the code.
DATASHEET_UTILITY = {"mmlu": 171, "bbh": 81, "truthfulqa": 50, "triviaqa": 100, "fluency": 50}


def paper_table1(rows: dict | None = None) -> pd.DataFrame:
    """The paper's LLaMA3-8B-Instruct Table 1 (or other `rows` of the paper) in the same layout as `table1`."""
    df = pd.DataFrame.from_dict(PAPER_TABLE1_LLAMA3 if rows is None else rows, orient="index",
                                columns=pd.MultiIndex.from_tuples(PAPER_COLUMNS))
    df.index.name = "Method"
    return df


def paper_model(model: str | None) -> tuple[str, dict] | None:
    """(label, rows) of the paper's numbers for `model` (a hub id, case-insensitive), or None when the paper
    did not evaluate it."""
    for hub_id, label, rows in PAPER_MODELS:
        if model is not None and str(model).lower() == hub_id.lower():
            return label, rows
    return None
