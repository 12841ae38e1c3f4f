"""Every option of a model architecture and of a task, and the registered architectures.

    python -m mega_fairseq.options --arch mega_lra_text --task mega_sequence_classification
    python -m mega_fairseq.options --list-archs [--all]

fairseq 0.12's ``--help`` shows no model or task option (for any model); this lists them as
fairseq-train takes them: each flag with the value ``--arch`` gives it, its default (the value of
the family's base arch, e.g. ``mega_classifier``; for a task, its config's default) and its help
text. The flags are the ones fairseq builds from the config dataclasses, and the values are what
the registered arch functions set, run the way fairseq runs them, so the list cannot drift from
what training does. In ``scripts/train.sh`` (Hydra) the same options are ``model.NAME=VALUE`` and
``task.NAME=VALUE``, NAME being the flag without ``--`` and with ``_`` for ``-``.
"""

import argparse
import difflib
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from fairseq.dataclass.utils import gen_parser_from_dataclass
from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_NAME_REGISTRY, MODEL_DATACLASS_REGISTRY, MODEL_REGISTRY
from fairseq.tasks import TASK_DATACLASS_REGISTRY, TASK_REGISTRY

from .models.mega_classifier import CLASSIFIER_PRESETS
from .models.mega_lm import LM_PRESETS
from .models.mega_translation import MT_PRESETS

# the plugin's model families: their preset tables and the tasks they train with
PLUGIN_FAMILIES = {
    "mega_lm": (LM_PRESETS, "language models; --task mega_language_modeling or fairseq's language_modeling"),
    "mega": (MT_PRESETS, "translation; fairseq's --task translation or translation_multi_simple_epoch"),
    "mega_classifier": (CLASSIFIER_PRESETS, "sequence classifiers; --task mega_sequence_classification"),
}


@dataclass
class Option:
    flag: str  # as fairseq-train takes it: --encoder-layers, or DATA for the positional data folder
    value: Any  # what --arch gives it
    default: Any  # what the family's base arch gives it (for a task: its default)
    help: str


def _flags(parser: argparse.ArgumentParser) -> List[argparse.Action]:
    return [action for action in parser._actions if not isinstance(action, argparse._HelpAction)]


def _flag(action: argparse.Action) -> str:
    return action.option_strings[0] if action.option_strings else action.dest.upper()


def _help(action: argparse.Action) -> str:
    text = " ".join((action.help or "").split())
    return text + (f" (choices: {', '.join(map(str, action.choices))})" if action.choices else "")


def _value(namespace: argparse.Namespace, action: argparse.Action):
    value = getattr(namespace, action.dest, None)
    value = action.default if value is None else value
    return getattr(value, "value", value)  # enums as their strings


def _parser_of(dataclass_type: Optional[type], add_args: Callable) -> argparse.ArgumentParser:
    """The flags fairseq builds for a model or task: from its config dataclass, defaults kept (fairseq
    drops them while parsing so that the arch can set them), or from its legacy ``add_args``."""
    parser = argparse.ArgumentParser(add_help=False)
    if dataclass_type is not None:
        gen_parser_from_dataclass(parser, dataclass_type())
    else:
        add_args(parser)
    return parser


def _set_by(arch: str) -> argparse.Namespace:
    """What the arch function sets, called as fairseq calls it: on the parsed flags, where a flag
    left out is absent (here: all of them)."""
    namespace = argparse.Namespace()
    ARCH_CONFIG_REGISTRY[arch](namespace)
    return namespace


def base_arch(arch: str) -> Optional[str]:
    """The arch named as its model (``mega_classifier``: the family's base preset), if registered."""
    model_name = ARCH_MODEL_NAME_REGISTRY[arch]
    return model_name if model_name in ARCH_CONFIG_REGISTRY else None


def arch_options(arch: str) -> List[Option]:
    """Every option of the model of ``arch``: its value under ``arch`` and under the base arch."""
    model_name = ARCH_MODEL_NAME_REGISTRY[arch]
    parser = _parser_of(MODEL_DATACLASS_REGISTRY.get(model_name), MODEL_REGISTRY[model_name].add_args)
    preset = _set_by(arch)
    base = _set_by(base_arch(arch)) if base_arch(arch) else argparse.Namespace()
    return [Option(_flag(a), _value(preset, a), _value(base, a), _help(a)) for a in _flags(parser)]


def task_options(task: str) -> List[Option]:
    parser = _parser_of(TASK_DATACLASS_REGISTRY.get(task), TASK_REGISTRY[task].add_args)
    return [Option(_flag(a), None, _value(argparse.Namespace(), a), _help(a)) for a in _flags(parser)]


def _shown(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, str) and value.startswith("${"):
        return f"= {value[2:-1]}"  # an interpolation: the value of another option
    return str(value)


def table(options: List[Option], value_title: Optional[str], default_title: str = "default") -> str:
    """Aligned columns: flag, value (when ``value_title``), default, help."""
    titles = ["option", *([value_title] if value_title else []), default_title, "help"]
    rows = [[o.flag, *([_shown(o.value)] if value_title else []), _shown(o.default), o.help] for o in options]
    widths = [max(len(row[i]) for row in [titles, *rows]) for i in range(len(titles) - 1)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1]
                     for row in [titles, *rows])


def families(everything: bool) -> Dict[str, List[str]]:
    """Model name -> its registered archs, in registration order; the plugin's only unless ``everything``."""
    grouped: Dict[str, List[str]] = {}
    for arch, model_name in ARCH_MODEL_NAME_REGISTRY.items():
        if everything or model_name in PLUGIN_FAMILIES:
            grouped.setdefault(model_name, []).append(arch)
    return grouped


def arch_list(everything: bool) -> str:
    lines = []
    for model_name, archs in families(everything).items():
        presets, used = PLUGIN_FAMILIES.get(model_name, (None, "fairseq's own model"))
        lines.append(f"{model_name}: {used}")
        width = max(map(len, archs))
        for arch in archs:
            preset = presets.presets.get(arch) if presets is not None else None
            note = "" if preset is None else f"= {preset.alias_of}" if preset.alias_of else preset.notes
            lines.append(f"  {arch.ljust(width)}  {note}".rstrip())
    return "\n".join(lines)


def _known(name: str, registry, what: str) -> str:
    """``name``, or an error suggesting the registered names closest to it."""
    if name not in registry:
        close = difflib.get_close_matches(name, list(registry), n=5)
        suggestion = f"; did you mean {', '.join(close)}?" if close else ""
        raise SystemExit(f"options: error: unknown {what} '{name}'{suggestion} (registered: python -m "
                         f"mega_fairseq.options --list-archs --all lists the archs; fairseq-train --help the tasks)")
    return name


def main(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(prog="python -m mega_fairseq.options", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", help="list the options of this architecture's model, with the arch's values")
    parser.add_argument("--task", help="list the options of this task")
    parser.add_argument("--list-archs", action="store_true", help="list the registered architectures per model")
    parser.add_argument("--all", action="store_true", help="with --list-archs: fairseq's own models too")
    args = parser.parse_args(argv)
    if not (args.arch or args.task or args.list_archs):
        parser.error("give --arch, --task or --list-archs")
    sections = []
    if args.list_archs:
        sections.append(arch_list(args.all))
    if args.arch:
        arch = _known(args.arch, ARCH_MODEL_NAME_REGISTRY, "--arch")
        base = base_arch(arch)
        sections.append(f"--arch {arch} (model {ARCH_MODEL_NAME_REGISTRY[arch]}; scripts/train.sh: model.NAME=VALUE)\n"
                        + table(arch_options(arch), arch, f"default (--arch {base})" if base else "default"))
    if args.task:
        task = _known(args.task, TASK_REGISTRY, "--task")
        sections.append(f"--task {task} (scripts/train.sh: task.NAME=VALUE)\n" + table(task_options(task), None))
    print("\n\n".join(sections))


if __name__ == "__main__":
    main(sys.argv[1:])
