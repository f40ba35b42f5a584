"""The bundled demo: its data (3 English words to translate to French) and its base model, built locally.

No hub: ``write_demo_data`` regenerates ``fixtures/data`` from a seed, and ``ensure_demo_base`` builds the tiny
base model once, cached in a directory: a byte-level BPE tokenizer trained on the demo corpus, a small
``LlamaConfig``, and a few seconds of full fine-tuning on a *copy* task ("Repeat the words." over the demo's
English and French words) so that the base knows the demo's vocabulary but not the task. A plain LoRA adapter
(no ``modules_to_save``, so vLLM can serve it) then learns to translate. torch/transformers/tokenizers are
imported inside the functions, so importing this module is cheap; it trains nothing else.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

DEMO_BASE_NAME = "ftgate-demo-base"  # a missing model_name_or_path with this directory name is built on demand
RECIPE_VERSION = 2  # bump when the recipe changes: the cached base model is rebuilt (2: copy-task pre-training)
FRENCH = {
    "apple": "pomme", "river": "rivière", "stone": "pierre", "cloud": "nuage", "green": "vert", "music": "musique",
    "tiger": "tigre", "paper": "papier", "light": "lumière", "ocean": "océan", "bread": "pain", "chair": "chaise",
    "dream": "rêve", "earth": "terre", "flame": "flamme", "glass": "verre", "heart": "cœur", "house": "maison",
    "lemon": "citron", "money": "argent", "night": "nuit", "plant": "plante", "queen": "reine", "sugar": "sucre",
}
WORDS = tuple(FRENCH)
INSTRUCTION = "Translate the words to French."
SPLITS = {"test": 64, "validation": 64, "train": 1200}  # held-out sets first: they do not move with the train size
DATA_SEED = 1234
SPECIAL = ("<unk>", "<s>", "</s>", "<pad>")
VOCAB_SIZE = 512
MODEL_SEED = 0
MODEL_CONFIG = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "max_position_embeddings": 128, "tie_word_embeddings": False,
                "rms_norm_eps": 1e-6}
# The base model's pre-training: full fine-tuning on copying 3 words drawn from the English and French words, in
# LLaMA-Factory's `default` template. Without it a LoRA-only adapter cannot learn the task (a random-init base
# has a random lm_head that LoRA leaves frozen: the loss stays at ~4.9); with it LoRA r16 goes 6.7 -> 0.05.
COPY_INSTRUCTION = "Repeat the words."
COPY = {"rows": 2000, "epochs": 3, "batch_size": 16, "learning_rate": 1e-3, "seed": 7}


def demo_rows(seed: int = DATA_SEED) -> dict[str, list[dict[str, str]]]:
    """Alpaca rows per split (3 English words -> French, word by word); each word triple lies in one split only,
    so the test split is never trained on."""
    rng = random.Random(seed)
    triples: list[tuple[str, ...]] = []
    seen: set[tuple[str, ...]] = set()
    need = sum(SPLITS.values())
    while len(triples) < need:
        t = tuple(rng.sample(WORDS, 3))
        if t not in seen:
            seen.add(t)
            triples.append(t)
    out, start = {}, 0
    for split, n in SPLITS.items():
        out[split] = [{"instruction": INSTRUCTION, "input": " ".join(t), "output": " ".join(FRENCH[w] for w in t)}
                      for t in triples[start:start + n]]
        start += n
    return out




def to_sharegpt(rows: list[dict[str, str]]) -> list[dict]:
    return [{"conversations": [{"from": "human", "value": f"{r['instruction']}\n{r['input']}"},
                               {"from": "gpt", "value": r["output"]}]} for r in rows]


DATASET_INFO = {
    "translate_train": {"file_name": "translate_train.json"},
    "translate_validation": {"file_name": "translate_validation.json"},
    "translate_test": {"file_name": "translate_test.json"},
    "translate_sharegpt": {"file_name": "translate_sharegpt.json", "formatting": "sharegpt",
                         "columns": {"messages": "conversations"}},
}


def write_demo_data(data_dir: str | Path) -> Path:
    """Write the alpaca splits, the sharegpt variant and ``dataset_info.json`` (byte-identical on every call)."""
    d = Path(data_dir)
    d.mkdir(parents=True, exist_ok=True)
    rows = demo_rows()
    for split, items in rows.items():
        _dump(d / f"translate_{split}.json", items)
    _dump(d / "translate_sharegpt.json", to_sharegpt(rows["train"]))
    _dump(d / "dataset_info.json", DATASET_INFO)
    return d


def _dump(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def _corpus() -> list[str]:
    rows = demo_rows()
    lines = [f"Human: {r['instruction']}\n{r['input']}\nAssistant:{r['output']}" for rs in rows.values() for r in rs]
    return lines + ["System: You are a helpful assistant."]


def copy_rows() -> list[str]:
    """The copy task's inputs: 3 distinct words of the demo's English and French vocabulary each."""
    rng = random.Random(COPY["seed"])
    vocab = sorted(set(WORDS) | set(FRENCH.values()))
    return [" ".join(rng.sample(vocab, 3)) for _ in range(COPY["rows"])]


def render_prompt(instruction: str, text: str) -> str:
    """One user turn in LLaMA-Factory's ``default`` template (what the demo adapter is trained and served with)."""
    return f"Human: {instruction}\n{text}</s>\nAssistant:"


def pretrain_copy(model, tokenizer) -> list[float]:
    """Full fine-tuning of ``model`` on the copy task, loss on the answer tokens only; the loss per epoch."""
    import torch

    gen = torch.Generator().manual_seed(COPY["seed"])
    examples = []
    for text in copy_rows():
        prompt = tokenizer(render_prompt(COPY_INSTRUCTION, text), add_special_tokens=False)["input_ids"]
        answer = tokenizer(f"{text}</s>", add_special_tokens=False)["input_ids"]
        examples.append((prompt + answer, [-100] * len(prompt) + answer))
    opt = torch.optim.AdamW(model.parameters(), lr=COPY["learning_rate"], weight_decay=0.0)
    steps = COPY["epochs"] * -(-len(examples) // COPY["batch_size"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: max(0.0, 1 - i / steps))
    pad = tokenizer.pad_token_id
    model.train()
    losses = []
    for _ in range(COPY["epochs"]):
        order = torch.randperm(len(examples), generator=gen).tolist()
        total = 0.0
        for b in range(0, len(order), COPY["batch_size"]):
            batch = [examples[i] for i in order[b:b + COPY["batch_size"]]]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.tensor([x + [pad] * (width - len(x)) for x, _ in batch])
            labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch])
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in batch])
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            total += loss.item() * len(batch)
        losses.append(total / len(examples))
    model.eval()
    return losses


def build_tokenizer():
    """A byte-level BPE trained on the demo corpus (deterministic), wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=list(SPECIAL), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", model_max_length=MODEL_CONFIG["max_position_embeddings"])


def build_base(dst: str | Path) -> Path:
    """Build the base model (random init, then the copy task) and its tokenizer into ``dst`` (atomically)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    dst = Path(dst)
    tokenizer = build_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **MODEL_CONFIG)
    torch.manual_seed(MODEL_SEED)
    model = LlamaForCausalLM(config)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same seed gives the same weights on every CPU
    try:
        losses = pretrain_copy(model, tokenizer)
    finally:
        torch.set_num_threads(threads)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}-", dir=dst.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "ftgate_recipe.json").write_text(json.dumps(recipe(), indent=1) + "\n")
        (tmp / "ftgate_pretrain.json").write_text(json.dumps({"copy_loss_per_epoch": losses}, indent=1) + "\n")
        for f in [tmp, *tmp.iterdir()]:
            f.chmod(0o755 if f.is_dir() else 0o644)
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


def recipe() -> dict:
    """What the base model is built from; a directory built from another recipe is rebuilt."""
    import hashlib

    corpus = hashlib.sha256("\n".join(_corpus()).encode()).hexdigest()
    return {"recipe": "pytest_ftgate.demo.build_base", "version": RECIPE_VERSION, "model_seed": MODEL_SEED,
            "vocab_size_limit": VOCAB_SIZE, "tokenizer_corpus_sha256": corpus, "copy_task": {
                "instruction": COPY_INSTRUCTION, **COPY}, **MODEL_CONFIG}


def is_built(d: Path) -> bool:
    try:
        built = json.loads((d / "ftgate_recipe.json").read_text())
    except (OSError, ValueError):
        return False
    return built == recipe() and (d / "config.json").is_file() and (d / "model.safetensors").is_file()


def ensure_demo_base(dst: str | Path) -> Path:
    """The demo base model at ``dst``: kept if built by this recipe version, else copied from the user cache
    (``hashing.cache_dir()``), which is built once."""
    from .hashing import cache_dir

    dst = Path(dst)
    if is_built(dst):
        return dst
    import hashlib

    key = hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:12]
    cached = cache_dir() / f"{DEMO_BASE_NAME}-{key}"
    if not is_built(cached):
        build_base(cached)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}-", dir=dst.parent))
    try:
        shutil.copytree(cached, tmp, dirs_exist_ok=True)
        tmp.chmod(0o755)
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    except OSError:
        if not is_built(dst):  # another process may have put it there first
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


def default_base_dir(root: str | Path) -> Path:
    """Where the demo configs expect the base model: ``<root>/.ftgate/ftgate-demo-base``."""
    return Path(root) / ".ftgate" / DEMO_BASE_NAME


def main(argv: list[str] | None = None) -> int:
    """``python -m pytest_ftgate.demo BASE_DIR [--data DATA_DIR]``: build the base model (and the data)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m pytest_ftgate.demo", description=main.__doc__)
    ap.add_argument("base_dir", help=f"where to put the base model (conventionally .../{DEMO_BASE_NAME})")
    ap.add_argument("--data", default=None, help="also (re)write the demo data into this directory")
    ns = ap.parse_args(argv)
    if ns.data:
        print(f"demo data: {write_demo_data(ns.data)}")
    print(f"demo base model: {ensure_demo_base(ns.base_dir)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
