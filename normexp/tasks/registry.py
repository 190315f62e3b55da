"""Name → class tables for tasks and models: the one way components are chosen (by Hydra group choice) and built.

Entries are import paths so that choosing MNIST never imports fairseq. A task module must import its heavy
dependencies lazily (inside functions), so that its config dataclass is cheap to import.
"""
from __future__ import annotations

import importlib
from typing import Any

# task name -> (config dataclass, Task class)
TASKS: dict[str, tuple[str, str]] = {
    "mnist": ("normexp.tasks.mnist.task:MnistConfig", "normexp.tasks.mnist.task:MnistTask"),
    "rt": ("normexp.tasks.sentences.task:RtConfig", "normexp.tasks.sentences.task:SentenceTask"),
    "sst5": ("normexp.tasks.sentences.task:Sst5Config", "normexp.tasks.sentences.task:SentenceTask"),
    "ptb": ("normexp.tasks.parsing.task:ParsingConfig", "normexp.tasks.parsing.task:ParsingTask"),
    "enwik8": ("normexp.tasks.enwik8.task:Enwik8Config", "normexp.tasks.enwik8.task:Enwik8Task"),
    "iwslt14_deen": ("normexp.tasks.translation.task:TranslationConfig", "normexp.tasks.translation.task:TranslationTask"),
    "iwslt15_envi": ("normexp.tasks.translation.task:TranslationConfig", "normexp.tasks.translation.task:TranslationTask"),
    "wmt14_ende": ("normexp.tasks.translation.task:TranslationConfig", "normexp.tasks.translation.task:TranslationTask"),
}

# model name -> config dataclass (the task builds the model from it)
MODELS: dict[str, str] = {
    "cnn": "normexp.models.cnn:CNNConfig",
    "mlp": "normexp.models.mlp:MLPConfig",
    "transformer_encoder": "normexp.models.transformer_encoder:TransformerEncoderConfig",
    "parser_mlp": "normexp.models.parser_mlp:ParserMLPConfig",
    "transformer_xl": "normexp.models.transformer_xl:TransformerXLConfig",
    "fairseq_transformer": "normexp.models.fairseq_transformer:FairseqTransformerConfig",
}


def load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def task_configs() -> dict[str, type]:
    return {name: load(config) for name, (config, _) in TASKS.items()}


def model_configs() -> dict[str, type]:
    return {name: load(config) for name, config in MODELS.items()}


def task_class(name: str) -> Any:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: choose one of {sorted(TASKS)}")
    return load(TASKS[name][1])
